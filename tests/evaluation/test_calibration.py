"""Score calibration between a route and the new space: the map it fits, and what it is for (a merged search over
a partly filled vector ranks the right class first, instead of whichever side scores higher)."""

from __future__ import annotations

import numpy as np

from qdrant_compat.evaluation.calibration import fit_score_calibration


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _world(seed: int = 0, n_classes: int = 30, per: int = 8, dim: int = 16, offset: float = 2.0):
    """The same images in two spaces. The new one shares a common direction (trained embeddings often do), so
    even unrelated images score high in it; the route's (old vectors, or an adapter's) does not."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per)
    common = rng.normal(size=dim)
    common *= offset * np.sqrt(dim) / np.linalg.norm(common)
    new = _unit(centres[labels] + 0.6 * rng.normal(size=(len(labels), dim)) + common)
    route = _unit(centres[labels] + 0.6 * rng.normal(size=(len(labels), dim)))
    return new, route, labels


def _topk_scores_brute(q, g, k):
    out = []
    for i in range(len(q)):
        s = [float(q[i] @ g[j]) for j in range(len(g)) if j != i]
        out.append(sorted(s)[-k:])
    return np.asarray(out)


def test_the_map_gives_the_route_the_new_spaces_top_k_mean_and_spread():
    new, route, _ = _world()
    cal = fit_score_calibration(new, new, route, k=5, sample=10_000)
    sn, sr = _topk_scores_brute(new, new, 5), _topk_scores_brute(new, route, 5)
    mapped = cal["a"] * sr + cal["b"]
    assert abs(mapped.mean() - sn.mean()) < 1e-6 and abs(mapped.std() - sn.std()) < 1e-6
    assert cal["a"] != 1.0 and cal["n"] == len(new)


def test_one_space_needs_no_map():
    new, _, _ = _world(1)
    cal = fit_score_calibration(new, new, new)
    assert abs(cal["a"] - 1.0) < 1e-9 and abs(cal["b"]) < 1e-9


def _merged_precision(new, route, labels, filled, cal, k=5):
    """Leave-one-out precision@k of a merged search: filled points scored in the new space, the rest through the
    route (scores mapped by ``cal`` when given), one ranking."""
    hits = []
    for i in range(len(new)):
        s = np.where(filled, new @ new[i], route @ route[i])
        if cal is not None:
            s = np.where(filled, s, cal["a"] * s + cal["b"])
        s[i] = -np.inf
        top = np.argsort(-s)[:k]
        hits.append(np.mean(labels[top] == labels[i]))
    return float(np.mean(hits))


def test_calibration_keeps_the_filled_half_from_crowding_out_the_right_class():
    """Uncalibrated, the filled points' high new-space scores push the unfilled right-class points out of the top
    k, and a half-filled search is worse than the route alone (the old/old answer); calibrated, it is not."""
    for seed in range(3):
        new, route, labels = _world(seed)
        filled = np.random.default_rng(seed + 10).random(len(new)) < 0.5
        cal = fit_score_calibration(new, new, route, k=5)
        route_alone = _merged_precision(new, route, labels, np.zeros(len(new), bool), None)
        raw = _merged_precision(new, route, labels, filled, None)
        calibrated = _merged_precision(new, route, labels, filled, cal)
        assert raw < route_alone - 0.1, (seed, raw, route_alone)  # the dip calibration exists for
        assert calibrated > raw + 0.1, (seed, raw, calibrated)
