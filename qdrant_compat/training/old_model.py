"""The frozen old model's side of backward-compatible training.

The old model is used only through its registered ONNX file, so it is frozen by construction and can
never be put in train mode by mistake. Everything it contributes is computed once, before training:
its embedding of every training image (for alignment / contrastive terms) and its classifier rows in
the new label space, with synthesised rows (the old model's mean normalised embedding of the class) for
classes it never saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


def _normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def synthesize_rows(old_emb: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean normalised old embedding per class, renormalised ``(num_classes, d_old)``.

    Raises:
        InvalidArgumentError: a class has no training image.
    """
    e = _normalize(old_emb)
    rows = np.zeros((num_classes, e.shape[1]), dtype=np.float32)
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0)[:10].tolist()
        raise InvalidArgumentError(f"cannot synthesise old-classifier rows for classes without images: {missing}")
    np.add.at(rows, labels, e)
    return _normalize(rows / counts[:, None])


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
    weight = synthesize_rows(old_embeddings, labels, len(classes))
    synthesized = list(classes)
    if classifier is not None and synthesize == "missing":
        old_index = {c: i for i, c in enumerate(card.classes)}
        synthesized = []
        for ci, cname in enumerate(classes):
            if cname in old_index and old_index[cname] < len(classifier):
                weight[ci] = classifier[old_index[cname]]
            else:
                synthesized.append(cname)
        weight = _normalize(weight)
    elif classifier is None:
        log.info("old model %s has no classifier: every row is synthesised", card.ref)
    log.info("old classifier: %d kept rows, %d synthesised", len(classes) - len(synthesized), len(synthesized))
    return OldTargets(card=card, embeddings=_normalize(old_embeddings), weight=weight, synthesized=synthesized)


def prepare_old_targets(old: RegisteredModel, source, *, synthesize: str = "missing", batch_size: int = 128) -> OldTargets:  # type: ignore[no-untyped-def]
    """Run the registered old ONNX model over ``source`` and build :class:`OldTargets`."""
    from qdrant_compat.embedder import Embedder

    log.info("embedding %d training images with the old model %s", len(source), old.card.ref)
    emb = Embedder(old, batch_size=batch_size).embed_source(source)
    return build_old_targets(old.card, old.classifier_weight(), np.asarray(source.labels), list(source.classes), emb, synthesize=synthesize)
