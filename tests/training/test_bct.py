"""Backward-compatible training end to end on Omniglot: old model frozen behind ONNX, synthesised rows,
evidence recorded by evaluate, and the client routing new queries to the old vectors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qdrant_compat import CompatClient
from qdrant_compat.data import load_npz
from qdrant_compat.errors import IncompatibleModelError
from qdrant_compat.evaluation import evaluate_registered, record_bct_evidence
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.training import BCT_LOSSES, build_old_targets, prepare_old_targets, synthesize_rows

from ..conftest import OMNIGLOT, subset, train_register


def test_synthesised_rows_are_class_means_of_normalised_embeddings():
    e = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rows = synthesize_rows(e, np.array([0, 0, 1]), 2)
    assert np.allclose(rows[0], [np.sqrt(0.5), np.sqrt(0.5)])
    assert np.allclose(rows[1], [np.sqrt(0.5), np.sqrt(0.5)])
    with pytest.raises(Exception, match="classes without images: \\[2\\]"):
        synthesize_rows(e, np.array([0, 0, 1]), 3)


def test_old_rows_kept_for_known_classes_synthesised_for_new(trained):
    registry, card = trained[0], trained[1]
    old = registry.get_model(card.ref)
    clf = old.classifier_weight()
    classes = card.classes + ["brand-new"]
    labels = np.array([0, 1, 30, 30])
    emb = np.random.default_rng(0).normal(size=(4, card.dim)).astype(np.float32)
    t = build_old_targets(card, clf, labels, classes, emb)
    assert t.synthesized == ["brand-new"]
    assert np.allclose(t.weight[0], clf[0] / np.linalg.norm(clf[0]), atol=1e-6)
    assert np.allclose(t.weight[30], synthesize_rows(emb[2:], np.array([0, 0]), 1)[0], atol=1e-6)
    every = np.arange(len(classes))
    emb_all = np.random.default_rng(1).normal(size=(len(classes), card.dim)).astype(np.float32)
    t_all = build_old_targets(card, clf, every, classes, emb_all, synthesize="all")
    assert len(t_all.synthesized) == len(classes)
    assert np.allclose(t_all.weight[0], emb_all[0] / np.linalg.norm(emb_all[0]), atol=1e-6)
    t_none = build_old_targets(card, None, every, classes, emb_all)
    assert len(t_none.synthesized) == len(classes)
    with pytest.raises(Exception, match="classes without images"):
        build_old_targets(card, None, labels, classes, emb)


@pytest.fixture(scope="module")
def bct_world(trained, other_model, tmp_path_factory):
    import shutil

    from qdrant_compat import Registry

    tmp = tmp_path_factory.mktemp("bct")
    shutil.copytree(trained[0].root, tmp / "reg")  # a private registry: this module edits cards
    registry = Registry(tmp / "reg")
    v2_train = subset(load_npz(OMNIGLOT, "train"), 45)  # 15 classes the old model never saw
    old = prepare_old_targets(registry.get_model("omni@1"), v2_train)
    assert len(old.synthesized) == 15
    card, res = train_register(registry, v2_train, tmp, "omni-bct", "2", seed=0, epochs=4, old=old,
                               losses=dict(BCT_LOSSES))
    return registry, card


def test_bct_card_lineage_and_recorded_evidence(bct_world):
    registry, card = bct_world
    assert card.lineage.parent == "omni@1" and card.lineage.relation == "bct"
    test = subset(load_npz(OMNIGLOT, "test"), 45)
    rep, _ = evaluate_registered(registry, ["omni@1", "omni-bct@2", "omni-indep@2"], test, seen_classes=set(range(30)))
    assert rep.cells["omni-indep@2/omni@1"]["top1"] < 10  # independent models are incompatible
    assert rep.cells["omni-bct@2/omni@1"]["top1"] > 5 * rep.cells["omni-indep@2/omni@1"]["top1"]
    updated = record_bct_evidence(registry, "omni-bct@2", rep)
    ev = updated.lineage.evidence
    assert ev["cross_top1"] == pytest.approx(rep.cells["omni-bct@2/omni@1"]["top1"])
    assert ev["criterion_met"] == (ev["cross_top1"] > ev["old_top1"])
    assert registry.get_model("omni-bct@2").card.lineage.evidence == ev
    with pytest.raises(Exception, match="was not trained backward-compatibly"):
        record_bct_evidence(registry, "omni-indep@2", rep)


def _with_evidence(registry, criterion_met: bool):
    card = registry.get_model("omni-bct@2").card
    ev = {"cross_top1": 40.0, "old_top1": 30.0 if criterion_met else 50.0, "criterion_met": criterion_met}
    # signed as 'evaluate --record' signs what it measured: evidence of unknown origin is never acted on
    card = card.with_(lineage=dataclasses.replace(card.lineage, evidence=registry.sign_evidence(card, ev)))
    registry.update_card(card)
    return card


def test_routing_follows_the_measured_edge(bct_world, omni_test, random_vectors):
    registry, _ = bct_world
    c = CompatClient(location=":memory:", registry=registry, meta_ttl=0)
    c.create_collection("g", "omni@1")
    imgs = [omni_test.get(i) for i in range(len(omni_test))]
    c.upsert("g", "omni@1", Embedder(registry.get_model("omni@1")).embed(imgs), ids=list(range(len(imgs))))
    q = Embedder(registry.get_model("omni-bct@2")).embed(imgs[:1])
    _with_evidence(registry, criterion_met=True)
    route = c.route("g", "omni-bct@2")
    assert route.via == "bct" and route.vector == "omni@1"
    assert len(c.query("g", "omni-bct@2", q, limit=5)) == 5
    # new points written with the bct model land in the old vector: findable by old and new queries
    c.upsert("g", "omni-bct@2", q, ids=[9999])
    assert c.qdrant.count("g").count == len(imgs) + 1
    assert c.query("g", "omni-bct@2", q, limit=1)[0].id in (0, 9999)
    _with_evidence(registry, criterion_met=False)
    with pytest.raises(IncompatibleModelError, match="failed the compatibility criterion"):
        c.query("g", "omni-bct@2", q)
    card = registry.get_model("omni-bct@2").card
    registry.update_card(card.with_(lineage=dataclasses.replace(card.lineage, evidence={})))
    with pytest.raises(IncompatibleModelError, match="cannot search them"):
        c.query("g", "omni-bct@2", q)
    c.close()
