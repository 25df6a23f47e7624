"""Label-free compatible training: the labels are never read, and the result is compatible with the old model."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.models import ModelConfig
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.training import NOLABEL_LOSSES, TrainConfig, prepare_old_targets, train_model

from ..conftest import SPEC


class NoLabels:
    """An image source whose labels cannot be read: any access fails the test."""

    def __init__(self, src) -> None:
        self._src = src
        self.classes = list(src.classes)

    @property
    def labels(self):
        raise AssertionError("label-free training read the labels")

    def __len__(self) -> int:
        return len(self._src)

    def get(self, i: int):
        return self._src.get(i)


def test_label_free_training_never_reads_labels_and_is_compatible(trained, omni_train, omni_test):
    registry, card = trained[0], trained[1]
    src = NoLabels(omni_train)
    old = prepare_old_targets(registry.get_model(card.ref), src, labels=False)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=1, losses=dict(NOLABEL_LOSSES), no_labels=True)
    res = train_model(src, ModelConfig(backbone="smallcnn", in_channels=1, dim=32), cfg, SPEC, old=old)
    assert np.isfinite(res.history[-1]["loss"])
    # the new model's queries search the old model's gallery far above chance (30 classes: 3.3%)
    import torch

    from qdrant_compat.training.trainer import materialize

    x = materialize(omni_test, SPEC)
    with torch.no_grad():
        new = res.model(x).numpy()
    old_gallery = Embedder(registry.get_model(card.ref)).embed_source(omni_test)
    cross = evaluate_pair(new, old_gallery, np.asarray(omni_test.labels))["top1"]
    assert cross > 3 * 100 / 30, cross


def test_label_losses_are_refused_without_labels():
    with pytest.raises(InvalidArgumentError, match=r"no_labels: loss\(es\) \['norm_softmax'\] need labels"):
        TrainConfig(losses={"norm_softmax": 1.0, "instance_contrastive": 1.0}, no_labels=True)


def test_train_cli_no_labels(make_world, tmp_path):
    import json

    tmp, run = make_world(3)
    res = run("train", str(tmp / "gallery"), "--out", str(tmp / "ck0"), "--no-labels", ok=False)
    assert res.exit_code == 1 and "--no-labels trains a model compatible with an old one" in res.output
    out = json.loads(run("--json", "train", str(tmp / "gallery"), "--out", str(tmp / "ck"), "--channels", "1", "--size", "28",
                         "--dim", "32", "--epochs", "1", "--batch-size", "16", "--old-model", "omni@1", "--no-labels",
                         "--register", "nolabel@1").output)
    assert out["registered"] == "nolabel@1" and set(out["final"]) >= {"instance_contrastive", "self_distill"}
