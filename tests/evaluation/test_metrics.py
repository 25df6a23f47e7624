"""Retrieval metrics against plain-loop references and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.evaluation import evaluate_pair, retrieval_metrics
from qdrant_compat.evaluation.crossmodel import CompatibilityReport


def _loop(q, g, ql, gl, loo):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    top1, top5, aps = [], [], []
    for i in range(len(q)):
        cand = [(float(qn[i] @ gn[j]), j) for j in range(len(g)) if not (loo and j == i)]
        cand.sort(key=lambda t: -t[0])
        rel = [gl[j] == ql[i] for _, j in cand]
        first = rel.index(True) if True in rel else 10**9
        top1.append(first < 1)
        top5.append(first < 5)
        hits, prec = 0, []
        for r, ok in enumerate(rel, 1):
            if ok:
                hits += 1
                prec.append(hits / r)
        aps.append(np.mean(prec) if prec else 0.0)
    return np.mean(top1), np.mean(top5), np.mean(aps)


@pytest.mark.parametrize("loo", [True, False])
def test_matches_plain_loop(loo):
    rng = np.random.default_rng(3)
    q = rng.normal(size=(40, 6))
    g = q + 0.8 * rng.normal(size=q.shape) if loo else rng.normal(size=(55, 6))
    ql = rng.integers(0, 5, size=len(q))
    gl = ql if loo else rng.integers(0, 5, size=len(g))
    per = retrieval_metrics(q, g, ql, gl, leave_one_out=loo, chunk=7)
    t1, t5, ap = _loop(q, g, ql, gl, loo)
    assert per["top1"].mean() == pytest.approx(t1)
    assert per["top5"].mean() == pytest.approx(t5)
    assert per["ap"].mean() == pytest.approx(ap)


def test_hand_computed_case():
    # query 0 (class a) ranks: g1 (b), g0 (a), g2 (a) -> first hit at rank 2; AP = (1/2 + 2/3) / 2
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.8, 0.6], [1.0, 0.05], [0.0, 1.0]])
    per = retrieval_metrics(q, g, np.array([0]), np.array([0, 1, 0]))
    assert per["top1"][0] == 0 and per["top5"][0] == 1
    assert per["ap"][0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_leave_one_out_removes_self_match():
    x = np.eye(3)
    per = retrieval_metrics(x, x, np.array([0, 1, 2]), np.array([0, 1, 2]), leave_one_out=True)
    assert per["top1"].sum() == 0  # only the removed self-match was relevant


def test_dimension_mismatch_is_an_error():
    with pytest.raises(InvalidArgumentError, match="queries are 3-d but the gallery is 4-d"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 4)), np.zeros(2), np.zeros(2))


def test_seen_new_split_and_derived_figures():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)
    centers = rng.normal(size=(4, 8)) * 3
    old = centers[labels] + rng.normal(size=(20, 8))
    out = evaluate_pair(old, old, labels, seen_classes={0, 1})
    assert {"top1_seen", "top1_new", "mAP_seen"} <= set(out)
    rep = CompatibilityReport(cells={
        "old/old": {"top1": 20.0}, "new/old": {"top1": 26.0}, "new/new": {"top1": 29.0}, "indep/indep": {"top1": 30.0},
    })
    d = rep.derived(indep="indep")
    assert d["criterion_met"] is True
    assert d["update_gain"] == pytest.approx(0.6)
    assert d["compatibility_cost"] == pytest.approx(1.0)
