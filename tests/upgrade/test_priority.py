"""Backfill orders: each score ranks first the points it is meant to find."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.upgrade.priority import (
    ErrorModel,
    backfill_order,
    density_scores,
    disagreement_scores,
    uncertainty_scores,
)

E = np.eye(8, dtype=np.float32)


def _cloud(center: np.ndarray, n: int, rng: np.random.Generator, spread: float = 0.05) -> np.ndarray:
    return center + spread * rng.normal(size=(n, len(center))).astype(np.float32)


def test_uncertainty_puts_points_between_classes_first():
    w = E[:2]
    v = np.stack([E[0], E[1], (E[0] + E[1]) / 2, E[0] + 0.1 * E[1]])
    assert list(backfill_order("uncertainty", 4, vectors=v, classifier=w)[:2]) == [2, 3]


def test_density_finds_points_that_sit_among_another_class():
    rng = np.random.default_rng(0)
    w = E[:2]
    a, b = _cloud(E[0], 40, rng), _cloud(E[1], 40, rng)
    planted = _cloud(0.55 * E[0] + 0.45 * E[1], 3, rng, 0.01)  # the old model says class 0 ...
    crowd = _cloud(0.45 * E[0] + 0.55 * E[1], 12, rng, 0.01)  # ... amid points it puts in class 1
    v = np.concatenate([a, b, planted, crowd])
    scores = density_scores(v, w, k=5)
    top = set(np.argsort(-scores)[:3].tolist())
    assert top == {80, 81, 82}
    assert scores[:40].max() < 0.5  # inside a pure cluster: no other class around


def test_disagreement_ranks_class_flips_first():
    old_w, new_w = E[:2], E[:2]
    old_v = np.stack([E[0], E[0], E[1], E[1]])
    converted = np.stack([E[0], E[1] + 0.2 * E[0], E[1], E[1]])  # point 1 flips from class a to class b
    s = disagreement_scores(old_v, old_w, converted, new_w, ["a", "b"], ["a", "b"])
    assert int(np.argmax(s)) == 1 and s[1] > 1 > s[0]
    # classes are matched by name, not by row: the new classifier lists them in another order
    s2 = disagreement_scores(old_v, old_w, converted, new_w[::-1], ["a", "b"], ["b", "a"])
    assert int(np.argmax(s2)) == 1


def test_error_model_predicts_a_converters_per_point_error():
    rng = np.random.default_rng(1)
    old = rng.normal(size=(4000, 16)).astype(np.float32)
    new = old.copy()
    noisy = old[:, 0] > 0.5  # the converter is bad exactly where feature 0 is large
    converted = old + (rng.normal(size=old.shape) * noisy[:, None] * 2).astype(np.float32)
    model = ErrorModel.fit(old[:3000], converted[:3000], new[:3000])
    true_err = 1 - (converted * new).sum(1) / np.linalg.norm(converted, axis=1) / np.linalg.norm(new, axis=1)
    pred = model.scores(old[3000:])
    assert np.corrcoef(pred, true_err[3000:])[0, 1] > 0.5
    first = np.argsort(-pred)[:200]
    assert noisy[3000:][first].mean() > 0.9


def test_unknown_order_and_shape_mismatch_are_clear_errors():
    with pytest.raises(InvalidArgumentError, match="backfill order 'best' unknown; allowed"):
        backfill_order("best", 3)
    with pytest.raises(InvalidArgumentError, match="must share their dimension"):
        uncertainty_scores(np.ones((2, 3)), np.ones((2, 4)))
