"""Adopting a plain qdrant-client collection (one unnamed vector) and proving which model made it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qdrant_compat import CompatClient
from qdrant_compat.adoption import adopt
from qdrant_compat.errors import IncompatibleModelError
from qdrant_compat.indexing import point_id_for
from qdrant_compat.runtime.embedder import Embedder


@pytest.fixture()
def legacy(make_world, other_model):
    """A collection made with plain qdrant-client: one unnamed vector, filled by omni@1 outside the tool."""
    tmp, run = make_world(4)
    paths = sorted((tmp / "gallery").rglob("*.png"))
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    vecs = Embedder(c.registry.get_model("omni@1")).embed([str(p) for p in paths])
    c.close()
    q = QdrantClient(path=str(tmp / "store"))
    q.create_collection("legacy", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    q.upsert("legacy", points=[models.PointStruct(id=point_id_for(p), vector=v.tolist(), payload={"image_path": str(p)})
                               for p, v in zip(paths, vecs, strict=True)], wait=True)
    q.close()
    return tmp, run


def test_verify_passes_for_the_model_that_made_the_vectors(legacy):
    tmp, run = legacy
    out = json.loads(run("--json", "collection", "adopt", "legacy", "--model", "omni@1", "--verify", "20").output)
    v = out["verify"]
    assert v["passed"] and v["compared"] == 20 and v["median_cosine"] > 0.9999 and out["metadata"]["read"] == ""
    hits = json.loads(run("--json", "search", str(next((tmp / "gallery").rglob("*.png"))), "--collection", "legacy",
                          "--model", "omni@1", "-k", "1").output)
    assert hits[0]["score"] > 0.999  # the unnamed vector serves the adopted model's queries


def test_verify_refuses_another_model(legacy):
    tmp, run = legacy
    res = run("collection", "adopt", "legacy", "--model", "omni-indep@2", "--verify", "20", ok=False)
    assert res.exit_code == 1 and "refusing to adopt 'legacy' as omni-indep@2" in res.output and "median cosine" in res.output
    info = run("collection", "info", "legacy", ok=False)
    assert "has no qdrant-compat metadata" in info.output  # nothing was written


def test_verify_refuses_the_right_model_with_the_wrong_preprocessing(legacy):
    tmp, run = legacy
    d = tmp / "reg" / "models" / "omni" / "1"
    card = json.loads((d / "card.json").read_text())
    card.update(version="1-wrongnorm", fingerprint="", seal="")
    card["input"].update(mean=[0.5], std=[0.5])  # same bytes, another mean/std
    (tmp / "c.json").write_text(json.dumps(card))
    run("model", "register", str(d / "model.onnx"), "--card", str(tmp / "c.json"))
    res = run("collection", "adopt", "legacy", "--model", "omni@1-wrongnorm", "--verify", "20", ok=False)
    assert "refusing to adopt" in res.output
    out = json.loads(run("--json", "collection", "adopt", "legacy", "--model", "omni@1-wrongnorm", "--verify", "20",
                         "--force").output)
    assert not out["verify"]["passed"] and out["metadata"]["read"] == ""


def test_verify_needs_readable_images(legacy, tmp_path):
    tmp, run = legacy
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    with pytest.raises(Exception, match="reference a readable image in payload field 'photo'"):
        adopt(c, "legacy", "omni@1", verify=5, image_field="photo")
    with pytest.raises(IncompatibleModelError):
        adopt(c, "legacy", "omni-indep@2", verify=5)
    c.close()


def test_an_adopted_unnamed_vector_collection_upgrades_in_place_on_the_embedded_store(legacy):
    tmp, run = legacy
    run("collection", "adopt", "legacy", "--model", "omni@1", "--verify", "10")
    out = json.loads(run("--json", "upgrade", "run", "legacy", "--to", "omni-indep@2", "--strategy", "backfill").output)
    assert out["remaining"] == 0 and out["job"]["source"] == ""
    run("upgrade", "cutover", "legacy", "--grace", "0")
    img = str(next((tmp / "gallery").rglob("*.png")))
    hits = json.loads(run("--json", "search", img, "--collection", "legacy", "--model", "omni-indep@2", "-k", "1").output)
    assert hits[0]["score"] > 0.999
    res = run("upgrade", "cleanup", "legacy", "--yes", ok=False)
    assert "unnamed vector, which Qdrant cannot drop" in res.output


def test_an_unnamed_vector_converts_in_place(legacy):
    """The source vector's name is "": it must be read, not dropped as falsy (a bug: "point 0 has no '' vector")."""
    tmp, run = legacy
    run("collection", "adopt", "legacy", "--model", "omni@1")
    fit = json.loads(run("--json", "converter", "fit", str(tmp / "gallery"), "--source", "omni@1", "--target",
                         "omni-indep@2", "--kind", "linear").output)
    run("upgrade", "run", "legacy", "--to", "omni-indep@2", "--strategy", "convert")
    st = json.loads(run("--json", "upgrade", "status", "legacy").output)
    assert st["vectors"]["omni-indep@2"]["converted"] == st["points"] > 0
    assert st["vectors"][""]["converted"] == 0  # the old vector was never counted as converted
    from qdrant_client import QdrantClient

    from qdrant_compat.registry import Registry
    from qdrant_compat.runtime.onnx import ConverterRuntime

    q = QdrantClient(path=str(tmp / "store"))
    recs = q.scroll("legacy", limit=5, with_vectors=True)[0]
    q.close()
    old = np.asarray([r.vector[""] for r in recs], np.float32)
    want = ConverterRuntime(Registry(tmp / "reg")).apply(fit["id"], old)
    got = np.asarray([r.vector["omni-indep@2"] for r in recs], np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_verify_samples_at_random_not_the_first_points(legacy):
    """The first points in scroll order hold omni@1's vectors, every later one another model's: a sample of the
    first N passed at median 1.0; a uniform random sample must see the others and refuse."""
    tmp, run = legacy
    q = QdrantClient(path=str(tmp / "store"))
    recs = q.scroll("legacy", limit=1000, with_payload=True)[0]  # scroll order
    c = CompatClient(q, registry=tmp / "reg")
    other = Embedder(c.registry.get_model("omni-indep@2")).embed([r.payload["image_path"] for r in recs[5:]])
    q.upsert("legacy", points=[models.PointStruct(id=r.id, vector=v.tolist(), payload=r.payload)
                               for r, v in zip(recs[5:], other, strict=True)], wait=True)
    q.close()
    res = run("collection", "adopt", "legacy", "--model", "omni@1", "--verify", "5", ok=False)
    assert res.exit_code == 1 and "refusing to adopt" in res.output


def test_verify_needs_most_sampled_images_readable(legacy):
    tmp, run = legacy
    q = QdrantClient(path=str(tmp / "store"))
    recs = q.scroll("legacy", limit=1000, with_payload=True)[0]
    for r in recs[1:]:  # all but one image reference broken
        q.set_payload("legacy", {"image_path": r.payload["image_path"] + ".gone"}, points=[r.id])
    q.close()
    res = run("collection", "adopt", "legacy", "--model", "omni@1", "--verify", "20", ok=False)
    assert res.exit_code == 1 and "only 1 of the 20 sampled points" in res.output and "at least 20 are needed" in res.output
