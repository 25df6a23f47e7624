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
) -> int:
    """Embed every image of ``folder`` (``root/<class>/<image>``) with ``model`` and upsert it.

    The payload holds ``image_path`` (absolute) and ``class``; ids are stable per path, so indexing again
    resumes or updates. An unreadable image (corrupt, a decompression bomb, a model output that is not
    finite) is skipped with its reason appended to ``skipped``; it never stops the others. The collection is
    created only once the first batch is embedded, so a failure before that leaves nothing behind.
    Returns the number of images indexed.
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    src = ImageFolder(folder)
    for p in src.paths:  # a payload is JSON: a file name that is not UTF-8 cannot be referenced
        try:
            str(p.resolve()).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"image file name {str(p)!r} is not valid UTF-8; rename it (nothing was indexed)") from None
    card = client.card(model)
    emb = Embedder(client.registry.get_model(card.ref), batch_size=batch_size)
    reader = LocalImages()
    skipped = skipped if skipped is not None else []
    n, done = len(src), 0
    for s in range(0, n, batch_size):
        paths, images = [], []
        for p in src.paths[s : s + batch_size]:
            try:
                images.append(reader.read(str(p)))
                paths.append(p)
            except (CorruptArtifactError, InvalidArgumentError) as exc:
                skipped.append(f"{p}: {exc}")
        vecs = emb.embed(images) if images else np.empty((0, card.dim), np.float32)
        ok = [i for i, v in enumerate(vecs) if np.isfinite(v).all() and np.any(v)]
        skipped += [f"{paths[i]}: {card.ref} produced a non-finite or zero vector" for i in range(len(paths)) if i not in ok]
        paths, vecs = [paths[i] for i in ok], vecs[ok]
        if paths:
            if create and not client.store.exists(collection):
                client.create_collection(collection, card)
            payloads = [{"image_path": str(p.resolve()), "class": p.parent.name} for p in paths]  # class = its folder
            client.upsert(collection, card, vecs, ids=[point_id_for(p) for p in paths], payloads=payloads)
            done += len(paths)
        if progress:
            progress(min(n, s + batch_size), n)
    for reason in skipped[:20]:
        log.warning("skipped %s", reason)
    log.info("indexed %d images of %s into %s with %s (%d skipped)", done, folder, collection, card.ref, len(skipped))
    return done


def search_image(client: CompatClient, collection: str, model: str, image: str | Path, *, limit: int = 5) -> list[Any]:
    card = client.card(model)
    vec = Embedder(client.registry.get_model(card.ref)).embed([str(image)])
    return client.query(collection, card, vec, limit=limit)
