"""The frozen old model's side of backward-compatible training.

The old model is used only through its registered ONNX file, so it is frozen by construction and can
never be put in train mode by mistake. Everything it contributes is computed once, before training:
its embedding of every training image (for alignment / contrastive terms) and its classifier rows in
the new label space, with synthesised rows (the old model's mean normalised embedding of the class) for
classes it never saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.registry import RegisteredModel

log = logging.getLogger(__name__)
SYNTHESIZE_MODES = ("missing", "all")


@dataclass
class OldTargets:
    card: ModelCard
    embeddings: np.ndarray  # (n_train, d_old), L2-normalised
    weight: np.ndarray  # (n_new_classes, d_old), L2-normalised
    synthesized: list[str]
    classes: list[str] = field(default_factory=list)  # the new label space, in order


def _normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def synthesize_rows(old_emb: np.ndarray, labels: np.ndarray, num_classes: int, only: list[int] | None = None) -> np.ndarray:
    """Mean normalised old embedding per class, renormalised ``(num_classes, d_old)``.

    Args:
        only: the classes that need a row (others stay zero); default all.

    Raises:
        InvalidArgumentError: a needed class has no training image.
    """
    e = _normalize(old_emb)
    rows = np.zeros((num_classes, e.shape[1]), dtype=np.float32)
    counts = np.bincount(labels, minlength=num_classes)
    need = np.arange(num_classes) if only is None else np.asarray(only, dtype=np.int64)
    empty = need[counts[need] == 0] if len(need) else need
    if len(empty):
        raise InvalidArgumentError(f"cannot synthesise old-classifier rows for classes without images: {empty[:10].tolist()}")
    np.add.at(rows, labels, e)
    rows[need] = _normalize(rows[need] / counts[need, None])
    if only is not None:
        rows[np.setdiff1d(np.arange(num_classes), need)] = 0.0
    return rows


def build_old_targets(
    card: ModelCard,
    classifier: np.ndarray | None,
    labels: np.ndarray,
    classes: list[str],
    old_embeddings: np.ndarray,
    *,
    synthesize: str = "missing",
) -> OldTargets:
    """Assemble the old model's targets in the new label space from precomputed old embeddings.

    Args:
        card: the old model's card (its ``classes`` name the rows of ``classifier``).
        classifier: the old cosine-classifier rows ``(n_old_classes, d_old)``, or None.
        labels, classes: the new training set's labels and class names.
        old_embeddings: the old model's embedding of every training image ``(n, d_old)``.
        synthesize: ``"missing"`` synthesises rows only for classes the old classifier lacks; ``"all"``
            replaces every row by the class mean.
    """
    if synthesize not in SYNTHESIZE_MODES:
        raise InvalidArgumentError(f"synthesize must be one of {list(SYNTHESIZE_MODES)}, got {synthesize!r}")
    if old_embeddings.shape != (len(labels), card.dim):
        raise InvalidArgumentError(f"old embeddings must have shape ({len(labels)}, {card.dim}), got {old_embeddings.shape}")
    old_index = {c: i for i, c in enumerate(card.classes)}
    keep: dict[int, int] = {}
    if classifier is not None and synthesize == "missing":
        keep = {ci: old_index[c] for ci, c in enumerate(classes) if c in old_index and old_index[c] < len(classifier)}
    need = [ci for ci in range(len(classes)) if ci not in keep]
    weight = synthesize_rows(old_embeddings, labels, len(classes), only=need)
    for ci, oi in keep.items():
        weight[ci] = classifier[oi]  # type: ignore[index]
    weight = _normalize(weight)
    synthesized = [classes[ci] for ci in need]
    if classifier is None:
        log.info("old model %s has no classifier: every row is synthesised", card.ref)
    log.info("old classifier: %d kept rows, %d synthesised", len(classes) - len(synthesized), len(synthesized))
    return OldTargets(card=card, embeddings=_normalize(old_embeddings), weight=weight, synthesized=synthesized,
                      classes=list(classes))


def unlabelled_old_targets(card: ModelCard, old_embeddings: np.ndarray) -> OldTargets:
    """The old model's embeddings of the training images alone (label-free training reads no classifier rows)."""
    if old_embeddings.ndim != 2 or old_embeddings.shape[1] != card.dim:
        raise InvalidArgumentError(f"old embeddings must have shape (n, {card.dim}), got {old_embeddings.shape}")
    return OldTargets(card=card, embeddings=_normalize(old_embeddings), weight=np.zeros((1, card.dim), np.float32),
                      synthesized=[], classes=[])


def prepare_old_targets(old: RegisteredModel, source, *, synthesize: str = "missing", batch_size: int = 128,  # type: ignore[no-untyped-def]
                        labels: bool = True) -> OldTargets:
    """Run the registered old ONNX model over ``source`` and build :class:`OldTargets` (``labels=False``:
    embeddings only, the source's labels are never read)."""
    from qdrant_compat.runtime.embedder import Embedder

    log.info("embedding %d training images with the old model %s", len(source), old.card.ref)
    emb = Embedder(old, batch_size=batch_size).embed_source(source, range(len(source)))
    if not labels:
        return unlabelled_old_targets(old.card, emb)
    return build_old_targets(old.card, old.classifier_weight(), np.asarray(source.labels), list(source.classes), emb, synthesize=synthesize)
