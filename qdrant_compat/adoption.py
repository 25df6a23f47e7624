"""Adopting a collection made without qdrant-compat, with proof of which model made its vectors.

``verify_stored_vectors`` re-embeds a sample of the points whose payload references an image and compares
the fresh vectors with the stored ones. The right model with the right preprocessing reproduces them (cosine
~1); the wrong model, or the right one with another mean/std or size, does not. Adoption is refused below a
median cosine of 0.99 unless forced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageReader, ImageRefs
from qdrant_compat.errors import CorruptArtifactError, IncompatibleModelError, InvalidArgumentError
from qdrant_compat.metadata import CompatMeta
from qdrant_compat.results import Result
from qdrant_compat.store import record_vector

log = logging.getLogger(__name__)
MIN_MEDIAN_COSINE = 0.99
MIN_READABLE = 0.5  # of the sampled points, at least this share must have a readable image (and MIN_COMPARED of them)
MIN_COMPARED = 20


def sample_ids(client: CompatClient, collection: str, n: int, seed: int) -> list[Any]:
    """``n`` point ids drawn uniformly at random (seeded reservoir sampling over an ids-only scan), in id order.

    A sample in scroll order would only ever look at the first points: a collection whose later points were
    written by another model would pass."""
    rng = np.random.default_rng(seed)
    chosen: list[Any] = []
    for k, rec in enumerate(client.store.scroll_all(collection, batch=2048, with_vectors=False, with_payload=False)):
        if k < n:
            chosen.append(rec.id)
        else:
            j = int(rng.integers(0, k + 1))
            if j < n:
                chosen[j] = rec.id
    return sorted(chosen, key=str)


@dataclass
class Verification(Result):
    model: str
    vector: str
    sampled: int
    compared: int
    median_cosine: float
    p05_cosine: float
    min_cosine: float
    passed: bool
    unreadable: list[str] = field(default_factory=list)
    seed: int = 0  # of the random sample (the same seed samples the same points)


@dataclass
class AdoptReport(Result):
    collection: str
    metadata: CompatMeta
    verify: Verification | None = None


def verify_stored_vectors(client: CompatClient, collection: str, model: ModelCard | str, *, vector: str, sample: int,
                          image_field: str = "image_path", images: ImageReader | None = None,
                          seed: int = 0) -> Verification:
    """Cosine between stored and freshly computed vectors on ``sample`` points drawn uniformly at random
    (:func:`sample_ids`, seeded and recorded).

    Raises:
        InvalidArgumentError: fewer than half the sampled points (or fewer than 20, or than the sample) reference
            a readable image in ``image_field``: too little to prove anything.
    """
    from qdrant_compat.runtime.embedder import Embedder

    card = client.card(model)
    reader = images or ImageRefs()
    ids = sample_ids(client, collection, max(1, sample), seed)
    recs = client.store.retrieve(collection, ids, with_vectors=[vector] if vector else True, with_payload=[image_field])
    stored, imgs, unreadable = [], [], []
    for r in recs:
        ref = (r.payload or {}).get(image_field)
        try:
            img = reader.read(ref)
        except (InvalidArgumentError, CorruptArtifactError) as exc:
            unreadable.append(f"point {r.id}: {exc}")
            continue
        v = record_vector(r, vector)
        if v is not None:
            stored.append(v)
            imgs.append(img)
    need = max(1, min(len(recs), MIN_COMPARED, sample), int(np.ceil(MIN_READABLE * len(recs))))
    if len(imgs) < need:
        raise InvalidArgumentError(
            f"--verify: only {len(imgs)} of the {len(recs)} sampled points of '{collection}' reference a readable image "
            f"in payload field '{image_field}'; at least {need} are needed to prove which model made the vectors "
            f"(e.g. {unreadable[0] if unreadable else 'no image reference'}). Name the field with --image-field, make "
            "the images reachable, or adopt without --verify"
        )
    fresh = Embedder(client.registry.get_model(card.ref)).embed(imgs)
    a = np.asarray(stored, np.float64)
    b = fresh.astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    med = float(np.median(cos))
    return Verification(model=card.ref, vector=vector, sampled=len(recs), compared=len(cos), median_cosine=med,
                        p05_cosine=float(np.percentile(cos, 5)), min_cosine=float(cos.min()),
                        passed=med >= MIN_MEDIAN_COSINE, unreadable=unreadable[:5], seed=seed)


def adopt(client: CompatClient, collection: str, model: ModelCard | str, *, vector_name: str | None = None,
          verify: int = 0, force: bool = False, image_field: str = "image_path",
          images: ImageReader | None = None) -> AdoptReport:
    """Declare which model made an existing collection's vectors (touching no point), optionally proving it.

    Raises:
        IncompatibleModelError: ``verify`` found the stored vectors are not this model's (median cosine below
            0.99; the figures are in the message), unless ``force``.
    """
    report = None
    if verify:
        card = client.card(model)
        # the same checks as the adoption itself (vector exists, dimension, distance), nothing written yet
        vec = client.adopt_collection(collection, card, vector_name=vector_name, dry_run=True).read
        report = verify_stored_vectors(client, collection, card, vector=vec, sample=verify, image_field=image_field,
                                       images=images)
        log.info("verify %s on %s: median cosine %.4f over %d points", card.ref, collection, report.median_cosine,
                 report.compared)
        if not report.passed and not force:
            raise IncompatibleModelError(
                f"refusing to adopt '{collection}' as {card.ref}: re-embedding {report.compared} sampled images gives a "
                f"median cosine of {report.median_cosine:.3f} to the stored vectors (5th percentile "
                f"{report.p05_cosine:.3f}, min {report.min_cosine:.3f}; the right model gives >= {MIN_MEDIAN_COSINE}). "
                "Wrong model, or the right one with other preprocessing (mean/std, size)? Pass --force to adopt anyway"
            )
    meta = client.adopt_collection(collection, model, vector_name=vector_name)
    return AdoptReport(collection=collection, metadata=meta, verify=report)
