"""Backfill order: which points to re-extract first.

``uncertainty`` ranks points by the old model's own doubt about them, ``1 - max_c cos(v, w_c)`` over its
classifier rows: points the old model understood least (typically classes it never saw) gain most from
re-extraction, in the spirit of FastFill's uncertainty-ordered backfilling (Jaeckle et al., ICLR 2023).
"""

from __future__ import annotations

import numpy as np

from qdrant_compat.errors import InvalidArgumentError


def uncertainty_scores(vectors: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """``1 - max cos`` to the classifier rows, per vector (higher = re-extract sooner)."""
    v = np.asarray(vectors, dtype=np.float32)
    w = np.asarray(classifier, dtype=np.float32)
    if v.ndim != 2 or w.ndim != 2 or v.shape[1] != w.shape[1]:
        raise InvalidArgumentError(f"vectors {v.shape} and classifier rows {w.shape} must share their dimension")
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return 1.0 - (v @ w.T).max(axis=1)


def backfill_order(kind: str, n: int, *, vectors: np.ndarray | None = None, classifier: np.ndarray | None = None,
                   seed: int = 0) -> np.ndarray:
    """Indices ``0..n-1`` in the order to re-extract them."""
    if kind == "id":
        return np.arange(n)
    if kind == "random":
        return np.random.default_rng(seed).permutation(n)
    if kind == "uncertainty":
        if vectors is None or classifier is None:
            raise InvalidArgumentError("uncertainty order needs the stored vectors and the old model's classifier")
        return np.argsort(-uncertainty_scores(vectors, classifier), kind="stable")
    raise InvalidArgumentError(f"backfill order {kind!r} unknown; allowed: ['uncertainty', 'random', 'id']")
