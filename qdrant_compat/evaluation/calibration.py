"""Score calibration between two routes, so a merged search (partial fill) compares like with like.

During a partial fill, the filled points are scored in the new space (new query vs new vector) and the
others through a compatible route (new query vs old vector). The two cosine distributions differ: new/new
neighbour scores run higher, so filled points would crowd out unfilled ones of the right class, and
quality could dip below old/old. An affine map ``a * s + b`` that matches the mean and spread of the
route's nearest-neighbour scores to the new space's removes that bias; it is measured once per edge.
"""

from __future__ import annotations

import numpy as np

from qdrant_compat.evaluation.metrics import l2_normalize


def _top_scores(q: np.ndarray, g: np.ndarray, k: int, loo: bool) -> np.ndarray:
    s = q @ g.T
    if loo:
        np.fill_diagonal(s, -np.inf)
    return np.sort(s, axis=1)[:, -k:]


def fit_score_calibration(queries: np.ndarray, gallery_new: np.ndarray, gallery_route: np.ndarray, *,
                          route_queries: np.ndarray | None = None, k: int = 10, sample: int = 2000,
                          seed: int = 0) -> dict[str, float]:
    """``{"a", "b"}`` such that ``a * route_score + b`` has the mean and spread of new-space top-``k`` scores.

    Rows of the arrays embed the same images (leave-one-out: an image never scores itself).
    ``route_queries`` are the queries as the route sends them (an adapter's output); default ``queries``.
    """
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(queries), size=min(sample, len(queries)), replace=False)
    q = l2_normalize(queries[idx])
    qr = q if route_queries is None else l2_normalize(route_queries[idx])
    gn, gr = l2_normalize(gallery_new[idx]), l2_normalize(gallery_route[idx])
    sn, sr = _top_scores(q, gn, k, True), _top_scores(qr, gr, k, True)
    a = float(sn.std() / max(sr.std(), 1e-9))
    b = float(sn.mean() - a * sr.mean())
    return {"a": a, "b": b, "k": k, "n": len(idx)}
