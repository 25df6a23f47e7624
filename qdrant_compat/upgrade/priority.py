"""Backfill order: which points to re-extract first.

``uncertainty`` ranks points by the old model's own doubt about them, ``1 - max_c cos(v, w_c)`` over its
classifier rows: points the old model understood least (typically classes it never saw) gain most from
re-extraction, in the spirit of FastFill's uncertainty-ordered backfilling (Jaeckle et al., ICLR 2023).

Candidates measured against it on P1 (``benchmarks/p1_backfill.py``, Q6), each computable from what an
upgrade has before reading any image (stored vectors, the old classifier, a converter):

* :func:`density_scores`: points whose neighbourhood is crowded with points the old model puts in other
  classes (where an old vector is most likely to retrieve the wrong neighbours);
* :func:`disagreement_scores`: the old classifier on the stored vector and the new classifier on its
  converted vector name different classes (or agree with a low margin);
* :class:`ErrorModel`: FastFill's learned uncertainty for a converter: a ridge regression, fitted with the
  converter on training pairs, predicting each point's conversion error from its old vector.
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


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def density_scores(vectors: np.ndarray, classifier: np.ndarray, *, k: int = 10, chunk: int = 2048) -> np.ndarray:
    """Share of each point's ``k`` nearest stored neighbours (cosine) that the old classifier puts in another
    class than the point, plus its uncertainty as a tie-break (both in [0, 1]; higher = sooner)."""
    v = _unit(vectors)
    pred = (v @ _unit(classifier).T).argmax(axis=1)
    other = np.empty(len(v), dtype=np.float32)
    for s in range(0, len(v), chunk):
        sims = v[s : s + chunk] @ v.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf  # not its own neighbour
        nn = np.argpartition(-sims, min(k, len(v) - 2), axis=1)[:, :k]
        other[s : s + chunk] = (pred[nn] != pred[s : s + chunk, None]).mean(axis=1)
    return other + 0.01 * uncertainty_scores(vectors, classifier)


def disagreement_scores(old_vectors: np.ndarray, old_classifier: np.ndarray, converted: np.ndarray,
                        new_classifier: np.ndarray, old_classes: list[str], new_classes: list[str]) -> np.ndarray:
    """1 + (1 - margin) where the old classifier (stored vector) and the new classifier (converted vector) name
    different classes, else 1 - cos to the agreed class; classes matched by name (higher = sooner)."""
    po = _unit(old_vectors) @ _unit(old_classifier).T
    pn = _unit(converted) @ _unit(new_classifier).T
    name_o = np.asarray(old_classes)[po.argmax(axis=1)]
    name_n = np.asarray(new_classes)[pn.argmax(axis=1)]
    differ = name_o != name_n
    return np.where(differ, 2.0 - pn.max(axis=1), 1.0 - np.minimum(po.max(axis=1), pn.max(axis=1)))


class ErrorModel:
    """Predicts a converter's per-point error (1 - cosine to the true new vector) from the old vector: ridge
    regression on the unit old vector and its squares, fitted on training pairs where both vectors are known."""

    def __init__(self, coef: np.ndarray, bias: float) -> None:
        self.coef, self.bias = coef, bias

    @classmethod
    def fit(cls, old: np.ndarray, converted: np.ndarray, new: np.ndarray, *, alpha: float = 1.0) -> ErrorModel:
        x = cls._features(old)
        err = 1.0 - (_unit(converted) * _unit(new)).sum(axis=1).astype(np.float64)
        mu = err.mean()
        coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (err - mu))
        return cls(coef.astype(np.float32), float(mu))

    @staticmethod
    def _features(old: np.ndarray) -> np.ndarray:
        u = _unit(old).astype(np.float64)
        return np.concatenate([u, u * u], axis=1)

    def scores(self, old: np.ndarray) -> np.ndarray:
        return (self._features(old) @ self.coef + self.bias).astype(np.float32)


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
