"""P2's protocol at a toy size on CPU: new models get their own initialisation, the plain-BCT row is there,
and the negative control is checked and recorded."""

from __future__ import annotations

import pytest

from benchmarks import p2_bct
from benchmarks.common import negative_control
from qdrant_compat.data import open_source

from ..conftest import OMNIGLOT


def test_negative_control_flags_an_invalid_run():
    ok = negative_control({"indep/old": {"top1": [1.2, 0.8]}}, n_classes=100)
    assert ok["valid"] and ok["limit"] == pytest.approx(3.0)
    bad = negative_control({"indep/old": {"top1": [1.2, 9.5]}}, n_classes=100)  # one seed far above chance
    assert not bad["valid"]


def test_p2_toy_run(monkeypatch):
    seeds_used = []
    real_fit = p2_bct.fit

    def recording_fit(x, y, classes, cfg, spec, old=None):
        seeds_used.append((len(classes), cfg.seed, tuple(sorted(cfg.losses))))
        return real_fit(x, y, classes, cfg, spec, old=old)

    monkeypatch.setattr(p2_bct, "fit", recording_fit)
    train = open_source(OMNIGLOT, split="train", max_classes=6)
    test = open_source(OMNIGLOT, split="test", max_classes=6)
    doc = p2_bct.run_p2(train, test, seen=3, seeds=[0], epochs=1, size=32, batch_size=64, lr=2e-3, device="cpu")
    old_seed = [s for n, s, _ in seeds_used if n == 3]
    new_seeds = [s for n, s, _ in seeds_used if n == 6]
    assert old_seed == [0] and new_seeds == [1000, 1000, 1000]  # never the old model's initialisation
    assert ("influence", "norm_softmax") in [losses for _, _, losses in seeds_used]  # the published plain BCT
    assert set(doc["cells"]) == {"old/old", "indep/indep", "indep/old", "bct/old", "bct/bct", "bct_plain/old",
                                 "bct_plain/bct_plain"}
    assert doc["new_model_seeds"] == [1000] and doc["negative_control"]["cell"] == "indep/old"
    assert doc["valid"] == doc["negative_control"]["valid"]
    assert doc["negative_control"]["limit"] == pytest.approx(2 * 100 / 6 + 1)
