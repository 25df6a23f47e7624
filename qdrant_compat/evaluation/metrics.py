"""Retrieval metrics as in the cross-model retrieval test (BCT, FCT): CMC top-k and mAP.

``top-k``: share of queries whose first same-class hit ranks within the first ``k``. ``mAP``: mean over
queries of the average precision over the *full* ranking. Cosine similarity. With ``leave_one_out``, query
``i`` and gallery item ``i`` are the same image and that pair is removed from the ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from qdrant_compat.errors import InvalidArgumentError


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    leave_one_out: bool = False,
    ks: Sequence[int] = (1, 5),
    chunk: int = 1024,
) -> dict[str, np.ndarray]:
    """Per-query ``top{k}`` hits (0/1) and ``ap`` values; average them for the figures.

    Raises:
        InvalidArgumentError: dimensions or lengths disagree.
    """
    q, g = l2_normalize(queries), l2_normalize(gallery)
    if q.shape[1] != g.shape[1]:
        raise InvalidArgumentError(f"queries are {q.shape[1]}-d but the gallery is {g.shape[1]}-d")
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(ql) != len(q) or len(gl) != len(g):
        raise InvalidArgumentError("labels must match the number of queries and gallery items")
    if leave_one_out and len(q) != len(g):
        raise InvalidArgumentError("leave_one_out needs queries and gallery of the same images (same length)")
    return metrics_from_scores(lambda s, e: q[s:e] @ g.T, len(q), ql, gl, leave_one_out=leave_one_out, ks=ks, chunk=chunk)


def metrics_from_scores(
    scores: Callable[[int, int], np.ndarray],
    n_queries: int,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    leave_one_out: bool = False,
    ks: Sequence[int] = (1, 5),
    chunk: int = 1024,
) -> dict[str, np.ndarray]:
    """Like :func:`retrieval_metrics`, from a score function ``scores(start, end) -> (end-start, n_gallery)``
    (e.g. a merged search where part of the gallery is scored in another space)."""
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    first_hit = np.empty(n_queries, dtype=np.int64)
    ap = np.empty(n_queries, dtype=np.float64)
    for s in range(0, n_queries, chunk):
        sims = np.array(scores(s, min(n_queries, s + chunk)), dtype=np.float64)
        rows = np.arange(len(sims))
        if leave_one_out:
            sims[rows, s + rows] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")
        rel = gl[order] == ql[s : s + chunk, None]
        if leave_one_out:
            # the removed self-match sorts last; drop that column
            rel = rel[:, :-1]
        hit_any = rel.any(axis=1)
        first_hit[s : s + chunk] = np.where(hit_any, rel.argmax(axis=1), np.iinfo(np.int64).max)
        cum = np.cumsum(rel, axis=1)
        ranks = np.arange(1, rel.shape[1] + 1)
        n_rel = rel.sum(axis=1)
        ap[s : s + chunk] = np.where(n_rel > 0, (rel * cum / ranks).sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    out = {f"top{k}": (first_hit < k).astype(np.float64) for k in ks}
    out["ap"] = ap
    return out


def summarize(per_query: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Average per-query figures (in %), optionally over a subset of queries."""
    out = {}
    for k, v in per_query.items():
        vals = v if mask is None else v[mask]
        out["mAP" if k == "ap" else k] = float(100.0 * vals.mean()) if len(vals) else float("nan")
    return out
