"""An imported old model is a full citizen: its classifier can be attached, a term that would be a silent zero
is said at the start and applied to every image, and evaluate takes the seen classes by name."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.importing import import_onnx
from qdrant_compat.models import ModelConfig
from qdrant_compat.training import BCT_LOSSES, TrainConfig, prepare_old_targets, train_model

from ..conftest import OMNIGLOT, SPEC, subset


@pytest.fixture()
def team(trained, tmp_path):
    """omni@1's ONNX file imported as a team's model (a bare graph), and its classifier as the team would ship it."""
    import shutil

    from qdrant_compat import Registry

    reg = Registry(tmp_path / "reg")
    src = trained[0].get_model(trained[1].ref)
    onnx = tmp_path / "team.onnx"
    shutil.copy(src.onnx_path, onnx)
    np.savez(tmp_path / "clf.npz", weight=src.classifier_weight(), classes=np.asarray(trained[1].classes))
    return reg, onnx, tmp_path / "clf.npz", trained[1]


def test_import_with_the_teams_classifier_keeps_its_rows(team, omni_train):
    reg, onnx, clf, card = team
    imported = import_onnx(reg, onnx, "team", "1", mean=SPEC.mean, std=SPEC.std, classifier=clf)
    assert imported.classes == card.classes and imported.training["imported"]["classifier"] == "clf.npz"
    from qdrant_compat.data import load_npz

    v2 = subset(load_npz(OMNIGLOT, "train"), 40)
    old = prepare_old_targets(reg.get_model("team@1"), v2)
    assert len(old.synthesized) == 10 and old.synthesized == v2.classes[30:]  # only the 10 classes it never saw
    rows = np.load(clf)["weight"]
    np.testing.assert_allclose(old.weight[:30], rows / np.linalg.norm(rows, axis=1, keepdims=True), atol=1e-6)
    bare = import_onnx(reg, onnx, "team-bare", "1", mean=SPEC.mean, std=SPEC.std)
    assert bare.classes == [] and len(prepare_old_targets(reg.get_model(bare.ref), v2).synthesized) == 40


def test_bad_classifier_files_are_refused(team, tmp_path):
    reg, onnx, _, card = team
    np.savez(tmp_path / "short.npz", weight=np.ones((3, 7), np.float32), classes=np.asarray(["a", "b", "c"]))
    with pytest.raises(InvalidArgumentError, match=r"weight must be \(3, 32\) for 3 class names and a 32-d model"):
        import_onnx(reg, onnx, "t", "1", classifier=tmp_path / "short.npz")
    np.savez(tmp_path / "nokey.npz", rows=np.ones((3, 32), np.float32))
    with pytest.raises(InvalidArgumentError, match="needs arrays 'weight'"):
        import_onnx(reg, onnx, "t", "1", classifier=tmp_path / "nokey.npz")


def test_a_term_that_would_be_zero_is_said_and_applied_to_every_image(team, caplog):
    reg, onnx, _, _ = team
    import_onnx(reg, onnx, "team", "1", mean=SPEC.mean, std=SPEC.std)  # no classifier: every row synthesised
    from qdrant_compat.data import load_npz

    v2 = subset(load_npz(OMNIGLOT, "train"), 40)
    old = prepare_old_targets(reg.get_model("team@1"), v2)
    cfg = TrainConfig(epochs=1, batch_size=64, workers=0, losses=dict(BCT_LOSSES))
    with caplog.at_level(logging.WARNING):
        res = train_model(v2, ModelConfig(in_channels=1, dim=32), cfg, SPEC, old=old)
    assert any("cross_distill reads only images of classes the old classifier knew" in r.message for r in caplog.records)
    assert res.history[0]["cross_distill"] > 1e-4  # not the silent 0.000 of before


def test_evaluate_takes_the_seen_classes_by_name(make_world):
    tmp, run = make_world(30)
    # the folder's classes sort as 0000_..., 0001_...: name them by the model's card instead of by position
    out = json.loads(run("--json", "evaluate", str(OMNIGLOT), "--split", "test", "--max-classes", "40", "--model", "omni@1",
                         "--seen-classes-from", "omni@1").output)
    cell = out["cells"]["omni@1/omni@1"]
    by_position = json.loads(run("--json", "evaluate", str(OMNIGLOT), "--split", "test", "--max-classes", "40", "--model",
                                 "omni@1", "--seen-classes", "30").output)["cells"]["omni@1/omni@1"]
    assert cell["top1_seen"] == pytest.approx(by_position["top1_seen"])  # npz classes are in the card's order here
    names = tmp / "seen.txt"
    from qdrant_compat.data import load_npz

    names.write_text("\n".join(load_npz(OMNIGLOT, "test").classes[5:10]))
    five = json.loads(run("--json", "evaluate", str(OMNIGLOT), "--split", "test", "--max-classes", "40", "--model", "omni@1",
                          "--seen-classes-from", str(names)).output)["cells"]["omni@1/omni@1"]
    assert five["top1_seen"] != pytest.approx(cell["top1_seen"])
    bad = run("evaluate", str(OMNIGLOT), "--model", "omni@1", "--seen-classes-from", str(tmp / "gallery"), ok=False)
    assert bad.exit_code == 1


def test_init_from_a_model_trained_here_starts_from_its_checkpoint(trained, make_world):
    from safetensors.torch import load_file

    tmp, run = make_world(30)
    ckpt = trained[3]
    run("train", str(OMNIGLOT), "--max-classes", "40", "--epochs", "1", "--batch-size", "64", "--workers", "0",
        "--init-from", "omni@1", "--weights", str(ckpt), "--freeze-backbone", "--augment", "flip", "--dim", "16",
        "--out", str(tmp / "v2"))
    old, new = load_file(str(ckpt / "model.safetensors")), load_file(str(tmp / "v2" / "model.safetensors"))
    backbone = [k for k in old if k.startswith("backbone.")]
    assert backbone and all((old[k] == new[k]).all() for k in backbone)  # started from (and, frozen, kept) v1's backbone
    assert json.loads((tmp / "v2" / "training.json").read_text())["input"]["size"] == 28  # v1's input spec
