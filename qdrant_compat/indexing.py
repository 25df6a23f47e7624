"""Index an image folder into a collection, and search with an image: extractor + CompatClient."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageFolder
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
) -> int:
    """Embed every image of ``folder`` (``root/<class>/<image>``) with ``model`` and upsert it.

    The payload holds ``image_path`` (absolute) and ``class``; ids are stable per path. Returns the count.
    """
    src = ImageFolder(folder)
    for p in src.paths:  # a payload is JSON: a file name that is not UTF-8 cannot be referenced
        try:
            str(p.resolve()).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"image file name {str(p)!r} is not valid UTF-8; rename it (nothing was indexed)") from None
    card = client.card(model)
    if create and not client.store.exists(collection):
        client.create_collection(collection, card)
    emb = Embedder(client.registry.get_model(card.ref), batch_size=batch_size)
    n = len(src)
    for s in range(0, n, batch_size):
        paths = src.paths[s : s + batch_size]
        vecs = emb.embed([str(p) for p in paths])
        payloads = [{"image_path": str(p.resolve()), "class": src.classes[int(src.labels[s + j])]}
                    for j, p in enumerate(paths)]
        client.upsert(collection, card, vecs, ids=[point_id_for(p) for p in paths], payloads=payloads)
        if progress:
            progress(min(n, s + batch_size), n)
    log.info("indexed %d images of %s into %s with %s", n, folder, collection, card.ref)
    return n


def search_image(client: CompatClient, collection: str, model: str, image: str | Path, *, limit: int = 5) -> list[Any]:
    card = client.card(model)
    vec = Embedder(client.registry.get_model(card.ref)).embed([str(image)])
    return client.query(collection, card, vec, limit=limit)
