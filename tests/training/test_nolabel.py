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


def _predictor_run(trained, omni_train, **kw):
    registry, card = trained[0], trained[1]
    old = prepare_old_targets(registry.get_model(card.ref), NoLabels(omni_train), labels=False)
    cfg = TrainConfig(epochs=kw.pop("epochs", 3), batch_size=64, lr=3e-3, seed=2, no_labels=True,
                      losses={"predictor": 1.0, "self_distill": 1.0}, loss_options={"predictor": {"hidden": 64}})
    return train_model(NoLabels(omni_train), ModelConfig(backbone="smallcnn", in_channels=1, dim=48), cfg, SPEC, old=old,
                       **kw)


def test_the_predictor_head_is_trained_with_the_model_and_bridges_new_queries_to_the_old_gallery(trained, omni_train,
                                                                                                 omni_test):
    import torch

    from qdrant_compat.training.trainer import materialize

    res = _predictor_run(trained, omni_train)
    head = res.adapters["predictor"]
    assert (head.dim_in, head.dim_out) == (48, trained[1].dim) and head.fitted
    with torch.no_grad():
        new = res.model(materialize(omni_test, SPEC)).numpy()
    old_gallery = Embedder(trained[0].get_model(trained[1].ref)).embed_source(omni_test)
    labels = np.asarray(omni_test.labels)
    through = evaluate_pair(head.transform(new), old_gallery, labels)["top1"]
    # the head carries the new space into the old one: far above chance (3.3%), and far above the raw
    # new embedding (48-d, its first 32 dimensions never asked to be old) searching the old gallery
    raw = evaluate_pair(new[:, :32] / np.linalg.norm(new[:, :32], axis=1, keepdims=True), old_gallery, labels)["top1"]
    assert through > 4 * 100 / 30 and through > raw + 10, (through, raw)


def test_resume_restores_the_predictor_head(trained, omni_train, tmp_path):
    import torch

    whole = _predictor_run(trained, omni_train, epochs=2)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        _predictor_run(trained, omni_train, epochs=2, out_dir=str(tmp_path), on_epoch=stop_after_first)
    resumed = _predictor_run(trained, omni_train, epochs=2, out_dir=str(tmp_path), resume=True)
    a, b = whole.adapters["predictor"].module.state_dict(), resumed.adapters["predictor"].module.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_train_cli_registers_the_predictor_head_and_queries_route_through_it(make_world):
    import json

    from qdrant_compat import CompatClient, Registry
    from qdrant_compat.enums import Via

    tmp, run = make_world(3)
    out = json.loads(run("--json", "train", str(tmp / "gallery"), "--out", str(tmp / "ck"), "--channels", "1", "--size",
                         "28", "--dim", "32", "--epochs", "1", "--batch-size", "16", "--old-model", "omni@1",
                         "--no-labels", "--loss", "predictor=1", "--loss", "self_distill=1", "--register", "pred@1").output)
    conv_id = "pred-1-to-omni-1-predictor"
    assert out["converters"] == [conv_id] and (tmp / "ck" / "adapter-predictor" / "weights.safetensors").exists()
    listed = json.loads(run("--json", "converter", "list").output)
    card = next(c for c in listed if c["id"] == conv_id)
    assert (card["source"], card["target"], card["direction"]) == ("pred@1", "omni@1", "new_to_old")
    assert card["fit"]["trained_jointly"]["loss"] == "predictor"
    client = CompatClient(location=":memory:", registry=Registry(tmp / "reg"))
    try:
        client.create_collection("g", "omni@1")
        route = client.route("g", "pred@1")
    finally:
        client.close()
    assert route.via == Via.ADAPTER and route.converter == conv_id
