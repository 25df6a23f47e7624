"""Index an image folder into a collection, and search with an image: extractor + CompatClient."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageFolder, LocalImages
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError
from qdrant_compat.runtime.embedder import Embedder

log = logging.getLogger(__name__)
_NS = uuid.UUID("5b0f3a5e-4b9a-4b8e-9d7e-1c1a6a0c7f10")


def point_id_for(path: str | Path) -> str:
    """A stable id per image path, so indexing twice updates instead of duplicating."""
    return str(uuid.uuid5(_NS, str(Path(path).resolve())))


def _read_batch(reader: LocalImages, spec: Any, paths: list[Path]) -> tuple[list[Path], np.ndarray, list[str]]:
    """Read, decode and preprocess one batch (runs in the read pool): (readable paths, tensor, skip reasons)."""
    from qdrant_compat.data.transforms import preprocess

    ok, rows, skipped = [], [], []
    for p in paths:
        try:
            rows.append(preprocess([reader.read(str(p))], spec)[0])
            ok.append(p)
        except (CorruptArtifactError, InvalidArgumentError, OSError, ValueError) as exc:
            skipped.append(f"{p}: {exc}")
    tensor = np.stack(rows) if rows else np.empty((0, spec.channels, spec.size, spec.size), np.float32)
    return ok, tensor, skipped


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
    from concurrent.futures import ThreadPoolExecutor

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
    emb = Embedder(client.registry.get_model(card.ref), batch_size=batch_size)
    reader = LocalImages()
    n, done = len(src_paths), 0
    batches = [src_paths[s : s + batch_size] for s in range(0, n, batch_size)]

    def write(k: int, paths: list[Path], tensor: np.ndarray) -> None:
        nonlocal done
        vecs = emb.embed_tensor(tensor) if len(tensor) else np.empty((0, card.dim), np.float32)
        ok = [i for i, v in enumerate(vecs) if np.isfinite(v).all() and np.any(v)]
        skipped.extend(f"{paths[i]}: {card.ref} produced a non-finite or zero vector" for i in range(len(paths)) if i not in ok)
        paths, vecs = [paths[i] for i in ok], vecs[ok]
        if paths:
            if create and not client.store.exists(collection):
                client.create_collection(collection, card)
            payloads = [{"image_path": str(p.resolve()), "class": p.parent.name} for p in paths]  # class = its folder
            client.upsert(collection, card, vecs, ids=[point_id_for(p) for p in paths], payloads=payloads)
            done += len(paths)
        if progress:
            progress(min(n, (k + 1) * batch_size), n)

    if read_workers == 0:
        for k, b in enumerate(batches):
            paths, tensor, reasons = _read_batch(reader, card.input, b)
            skipped += reasons
            write(k, paths, tensor)
    else:
        with ThreadPoolExecutor(max_workers=read_workers, thread_name_prefix="qdrant-compat-index") as pool:
            ahead = read_workers + 1
            futures = [pool.submit(_read_batch, reader, card.input, b) for b in batches[:ahead]]
            try:
                for k in range(len(batches)):
                    paths, tensor, reasons = futures[k].result()
                    if k + ahead < len(batches):
                        futures.append(pool.submit(_read_batch, reader, card.input, batches[k + ahead]))
                    skipped += reasons
                    write(k, paths, tensor)
            finally:
                for f in futures:
                    f.cancel()
    for reason in skipped[:20]:
        log.warning("skipped %s", reason)
    log.info("indexed %d images of %s into %s with %s (%d skipped)", done, folder, collection, card.ref, len(skipped))
    return done


def search_image(client: CompatClient, collection: str, model: str, image: str | Path, *, limit: int = 5) -> list[Any]:
    card = client.card(model)
    vec = Embedder(client.registry.get_model(card.ref)).embed([str(image)])
    return client.query(collection, card, vec, limit=limit)
