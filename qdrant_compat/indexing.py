"""Index an image folder into a collection, and search with an image: extractor + CompatClient."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageFolder, LocalImages
from qdrant_compat.engines.base import OK, finite_rows
from qdrant_compat.engines.local import LocalEngine
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.runtime.embedder import Embedder

log = logging.getLogger(__name__)
_NS = uuid.UUID("5b0f3a5e-4b9a-4b8e-9d7e-1c1a6a0c7f10")


def point_id_for(path: str | Path) -> str:
    """A stable id per image path, so indexing twice updates instead of duplicating."""
    return str(uuid.uuid5(_NS, str(Path(path).resolve())))


def index_folder(
    client: CompatClient,
    collection: str,
    model: str,
    folder: str | Path,
    *,
    batch_size: int = 64,
    create: bool = True,
    progress: Callable[[int, int], None] | None = None,
    skipped: list[str] | None = None,
    read_workers: int = 2,
) -> int:
    """Embed every image of ``folder`` (``root/<class>/<image>``) with ``model`` and upsert it.

    The payload holds ``image_path`` (absolute) and ``class``; ids are stable per path, so indexing again
    resumes or updates. An unreadable image (corrupt, a decompression bomb, one that cannot be preprocessed,
    a model output that is not finite) is skipped with its reason appended to ``skipped``; it never stops the
    others. The collection is created only once the first batch is embedded, so a failure before that leaves
    nothing behind. ``read_workers`` threads read, decode and preprocess the next batches while this one is
    embedded and written (at most ``read_workers + 1`` batches ahead: bounded memory); 0 runs the steps one
    after another. Returns the number of images indexed.
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if read_workers < 0:
        raise InvalidArgumentError(f"read_workers must be >= 0, got {read_workers}")
    skipped = skipped if skipped is not None else []
    src_paths = []
    for p in ImageFolder(folder).paths:  # a payload is JSON: a file name that is not UTF-8 cannot be referenced
        try:
            str(p.resolve()).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"image file name {str(p)!r} is not valid UTF-8; rename it (nothing was indexed)") from None
        except (RuntimeError, OSError) as exc:  # a symbolic-link loop: RuntimeError before Python 3.13, OSError after
            skipped.append(f"{p}: cannot be resolved ({exc}); a symbolic-link loop or an unreadable link")
            continue
        src_paths.append(p)
    card = client.card(model)
    n, done = len(src_paths), 0
    engine = LocalEngine(read_workers)
    for out in engine.extract([str(p) for p in src_paths], registry_root=str(client.registry.root), model=card.ref,
                              batch_size=batch_size, reader=LocalImages()):
        paths = [src_paths[int(i)] for i in out["i"]]
        good = (out["status"] == OK) & finite_rows(out["vec"])
        for p, status, error, g in zip(paths, out["status"], out["error"], good, strict=True):
            if status != OK:
                skipped.append(f"{p}: {error}")
            elif not g:
                skipped.append(f"{p}: {card.ref} produced a non-finite or zero vector")
        paths, vecs = [p for p, g in zip(paths, good, strict=True) if g], out["vec"][good]
        if paths:
            if create and not client.store.exists(collection):
                client.create_collection(collection, card)
            payloads = [{"image_path": str(p.resolve()), "class": p.parent.name} for p in paths]  # class = its folder
            client.upsert(collection, card, vecs, ids=[point_id_for(p) for p in paths], payloads=payloads)
            done += len(paths)
        if progress:
            progress(int(out["i"][-1]) + 1, n)
    for reason in skipped[:20]:
        log.warning("skipped %s", reason)
    log.info("indexed %d images of %s into %s with %s (%d skipped)", done, folder, collection, card.ref, len(skipped))
    return done


def search_image(client: CompatClient, collection: str, model: str, image: str | Path, *, limit: int = 5) -> list[Any]:
    card = client.card(model)
    vec = Embedder(client.registry.get_model(card.ref)).embed([str(image)])
    return client.query(collection, card, vec, limit=limit)
