"""The compatibility gate: a held-out slice per class, a failing setting detected, the kept epoch meets the
criterion on its slice, and a model whose gate failed is never adopted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.models import ModelConfig
from qdrant_compat.training import BCT_LOSSES, TrainConfig, prepare_old_targets, train_model
from qdrant_compat.training.gate import GateConfig, split_holdout

from ..conftest import OMNIGLOT, SPEC, subset


def test_split_holds_out_each_class_and_never_trains_on_it():
    labels = np.repeat(np.arange(5), [20, 10, 4, 3, 12])
    tr, ho = split_holdout(labels, GateConfig(holdout=0.1, seed=1))
    assert len(np.intersect1d(tr, ho)) == 0 and len(tr) + len(ho) == len(labels)
    counts = np.bincount(labels[ho], minlength=5)
    assert counts.tolist() == [2, 2, 2, 0, 2]  # 10 % but at least 2; a class of 3 stays whole in training
    assert np.array_equal(split_holdout(labels, GateConfig(seed=1))[1], ho)  # seeded
    with pytest.raises(InvalidArgumentError, match="needs at least 2 classes with 4\\+ images"):
        split_holdout(np.repeat(np.arange(3), 3), GateConfig())


def _embed(model, src):
    from qdrant_compat.data import preprocess

    with torch.no_grad():
        return model(torch.from_numpy(preprocess([src.get(i) for i in range(len(src))], SPEC))).numpy()


@pytest.fixture(scope="module")
def v2_source():
    from qdrant_compat.data import load_npz

    return subset(load_npz(OMNIGLOT, "train"), 40)


def test_a_setting_known_to_fail_is_reported_and_the_weight_raised(trained, v2_source):
    old = prepare_old_targets(trained[0].get_model(trained[1].ref), v2_source)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3, seed=5, workers=0,
                      losses={"norm_softmax": 1.0, "cross_contrastive": 1e-4})  # compatibility all but switched off
    res = train_model(v2_source, ModelConfig(in_channels=1, dim=32), cfg, SPEC, old=old,
                      gate=GateConfig(boost=1.5, boost_after=0.0))
    g = res.gate
    assert g is not None and not g.criterion_met
    assert g.sentence().startswith("not compatible after 2 epochs (best new/old")
    assert "bridge with `converter fit` or backfill" in g.sentence()
    assert g.new_old < g.old_old and g.holdout_images == 80  # 2 of each of the 40 classes
    assert [r["compat_weight_x"] for r in g.history] == [1.5, 2.25]  # the documented schedule
    assert res.history[-1]["gate_criterion_met"] == 0.0


def test_the_kept_epoch_meets_the_criterion_on_its_slice(trained, v2_source):
    from qdrant_compat.training.gate import GateConfig as G

    old_reg = trained[0].get_model(trained[1].ref)
    old = prepare_old_targets(old_reg, v2_source)
    cfg = TrainConfig(epochs=12, batch_size=64, lr=3e-3, seed=0, workers=0, losses=dict(BCT_LOSSES))
    gate = G(holdout=0.1, seed=0)
    res = train_model(v2_source, ModelConfig(in_channels=1, dim=32), cfg, SPEC, old=old, gate=gate)
    g = res.gate
    assert g is not None and g.criterion_met, g.history
    assert g.sentence().startswith(f"compatible: new/old {g.new_old:.1f} > old/old {g.old_old:.1f}")
    # measured again, independently, on the same slice with the model train_model returned
    _, held = split_holdout(np.asarray(v2_source.labels), gate)
    hold = v2_source.subset(held)
    new = _embed(res.model, hold)
    from qdrant_compat.runtime.embedder import Embedder

    old_emb = Embedder(old_reg).embed_source(hold)
    lab = np.asarray(hold.labels)
    assert evaluate_pair(new, old_emb, lab)["top1"] == pytest.approx(g.new_old, abs=1e-6)
    assert evaluate_pair(old_emb, old_emb, lab)["top1"] == pytest.approx(g.old_old, abs=1e-6)
    assert evaluate_pair(new, new, lab)["top1"] == pytest.approx(g.new_new, abs=1e-6)
    passing = [r for r in g.history if r["criterion_met"]]
    assert g.new_new == max(r["new_new"] for r in passing)  # the best new/new among the epochs that pass


def test_a_model_whose_gate_failed_is_never_adopted(make_world):
    tmp, run = make_world(30)
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    res = run("--json", "train", str(OMNIGLOT), "--max-classes", "40", "--channels", "1", "--size", "28", "--dim", "32",
              "--epochs", "1", "--batch-size", "64", "--workers", "0", "--old-model", "omni@1",
              "--loss", "norm_softmax", "--loss", "cross_contrastive=0.0001", "--out", str(tmp / "v2"), "--register", "omni@2")
    gate = json.loads(res.output)["gate"]
    assert gate["criterion_met"] is False and gate["verdict"].startswith("not compatible after 1 epochs")
    card = json.loads((tmp / "v2" / "training.json").read_text())
    assert card["gate"]["criterion_met"] is False
    # even with an evaluate --record on an easy set, the plan does not adopt a model whose gate failed
    run("evaluate", str(OMNIGLOT), "--split", "test", "--max-classes", "30", "--model", "omni@1", "--model", "omni@2",
        "--record", "omni@2")
    plan = run("upgrade", "plan", "g", "--to", "omni@2").output
    assert "failed its training-time compatibility gate (new/old" in plan
    assert "adopt" not in json.loads(run("--json", "upgrade", "plan", "g", "--to", "omni@2").output)["strategy"]


def test_a_separate_gate_set_takes_nothing_from_training(trained, v2_source, omni_test, monkeypatch):
    from qdrant_compat.runtime.embedder import Embedder
    from qdrant_compat.training import trainer as trainer_mod

    old_reg = trained[0].get_model(trained[1].ref)
    old = prepare_old_targets(old_reg, v2_source)
    seen_n: list[int] = []
    real = trainer_mod.StepSampler.__init__

    def spy(self, n, *a, **k):
        seen_n.append(n)
        real(self, n, *a, **k)

    monkeypatch.setattr(trainer_mod.StepSampler, "__init__", spy)
    cfg = TrainConfig(epochs=1, batch_size=64, workers=0, losses=dict(BCT_LOSSES))
    res = train_model(v2_source, ModelConfig(in_channels=1, dim=32), cfg, SPEC, old=old, gate=GateConfig(),
                      gate_data=(omni_test, Embedder(old_reg).embed_source(omni_test)))
    assert seen_n == [len(v2_source)]  # every training image trains
    assert res.gate.holdout_images == len(omni_test) and "images of the gate set" in res.gate.sentence()
    lab = np.asarray(omni_test.labels)
    e_old = Embedder(old_reg).embed_source(omni_test)
    assert res.gate.old_old == pytest.approx(evaluate_pair(e_old, e_old, lab)["top1"])


def test_gate_data_cannot_be_the_training_data(make_world):
    tmp, run = make_world(30)
    bad = run("train", str(OMNIGLOT), "--max-classes", "40", "--channels", "1", "--size", "28", "--epochs", "1",
              "--old-model", "omni@1", "--gate-data", str(OMNIGLOT), "--gate-split", "train", "--out", str(tmp / "v2"), ok=False)
    assert bad.exit_code == 1 and "--gate-data is the training data itself" in bad.output
