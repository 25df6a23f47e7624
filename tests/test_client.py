"""CompatClient on an embedded in-memory Qdrant: versioned collections and every guard."""

from __future__ import annotations

import re

import numpy as np
import pytest
from qdrant_client import models

from qdrant_compat import CompatClient
from qdrant_compat.errors import (
    CollectionNotFoundError,
    FingerprintMismatchError,
    IncompatibleModelError,
    InvalidArgumentError,
    UnmanagedCollectionError,
)
from qdrant_compat.metadata import META_KEY


def test_create_writes_metadata_block(client, trained):
    card = trained[1]
    client.create_collection("g", "omni@1")
    raw = client.qdrant.get_collection("g").config.metadata[META_KEY]
    assert raw["vectors"]["omni@1"]["fingerprint"] == card.fingerprint
    assert raw["vectors"]["omni@1"]["dim"] == card.dim
    assert raw["read"] == "omni@1" and raw["write"] == ["omni@1"]
    params = client.qdrant.get_collection("g").config.params.vectors
    assert params["omni@1"].size == card.dim


def test_upsert_and_query_roundtrip(client, random_vectors):
    client.create_collection("g", "omni@1")
    v = random_vectors(20, 32)
    ids = client.upsert("g", "omni@1", v, ids=list(range(20)), payloads=[{"i": i} for i in range(20)])
    assert ids == list(range(20))
    hits = client.query("g", "omni@1", v[7], limit=3)
    assert hits[0].id == 7 and hits[0].payload["i"] == 7
    assert client.info("g").vectors["omni@1"].points == 20


def test_hits_carry_only_the_users_payload(client, random_vectors):
    client.create_collection("g", "omni@1")
    v = random_vectors(5, 32)
    client.upsert("g", "omni@1", v, ids=list(range(5)), payloads=[{"i": i} for i in range(5)])
    assert client.query("g", "omni@1", v[2], limit=1)[0].payload == {"i": 2}
    assert [h[0].payload for h in client.query_batch("g", "omni@1", v[:2], limit=1, with_payload=True)] == [{"i": 0},
                                                                                                          {"i": 1}]
    kept = client.query("g", "omni@1", v[2], limit=1, internal_payload=True)[0].payload
    assert kept["i"] == 2 and "_qdrant_compat" in kept  # the write stamp, for tools that need it


def test_results_and_cards_have_short_reprs(client, trained, random_vectors):
    from qdrant_compat.enums import VectorState

    card = trained[1]
    r = repr(card)
    assert len(r) < 400 and f"classes=<{len(card.classes)} items>" in r and r.startswith("ModelCard(name='omni'")
    assert repr(VectorState.ACTIVE) == "'active'" and str(VectorState.ACTIVE) == "active"
    client.create_collection("g", "omni@1")
    client.upsert("g", "omni@1", random_vectors(3, 32), ids=[0, 1, 2])
    info = repr(client.info("g"))
    assert info.startswith("CollectionReport(collection='g', points=3") and "<VectorState" not in info


def test_wrong_dimension(client, random_vectors):
    client.create_collection("g", "omni@1")
    with pytest.raises(InvalidArgumentError, match=r"expected vectors of dimension 32, got shape \(2, 31\)"):
        client.upsert("g", "omni@1", random_vectors(2, 31))
    with pytest.raises(InvalidArgumentError, match="expected vectors of dimension 32"):
        client.query("g", "omni@1", random_vectors(1, 64)[0])


def test_nan_and_zero_vectors(client, random_vectors):
    client.create_collection("g", "omni@1")
    v = random_vectors(3, 32)
    v[1, 4] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"1 vector\(s\) contain NaN or infinity \(first at row 1\)"):
        client.upsert("g", "omni@1", v)
    with pytest.raises(InvalidArgumentError, match="zero vector"):
        client.upsert("g", "omni@1", np.zeros((1, 32)))
    assert client.qdrant.count("g").count == 0  # nothing half-written


@pytest.mark.parametrize("bad", ["not-a-uuid", -1, 1.5, None, True, 1 << 64])
def test_ids_qdrant_cannot_take_are_refused_before_anything_is_written(client, random_vectors, bad):
    """A non-UUID string id used to surface as qdrant-client's ValueError, a float as a pydantic error, and -1 was
    taken by the embedded store though a server refuses it (#20, finding 11)."""
    client.create_collection("g", "omni@1")
    with pytest.raises(InvalidArgumentError, match=rf"point id {re.escape(repr(bad))} \(position 1\) is not allowed: "
                                                   "Qdrant takes unsigned integers or UUID strings"):
        client.upsert("g", "omni@1", random_vectors(2, 32), ids=[7, bad])
    assert client.qdrant.count("g").count == 0
    with pytest.raises(InvalidArgumentError, match="is not allowed"):
        client.delete("g", [bad])
    client.upsert("g", "omni@1", random_vectors(2, 32), ids=[(1 << 64) - 1, "0b7a9f1e-59d9-4d3e-8a3b-4a4d2b5c6e7f"])
    assert client.qdrant.count("g").count == 2


@pytest.mark.parametrize("limit", [0, -1, 2.5, "3", True])
def test_a_query_limit_must_be_a_positive_integer(client, random_vectors, limit):
    client.create_collection("g", "omni@1")
    client.upsert("g", "omni@1", random_vectors(3, 32))
    for call in (lambda: client.query("g", "omni@1", random_vectors(1, 32)[0], limit=limit),
                 lambda: client.query_batch("g", "omni@1", random_vectors(2, 32), limit=limit)):
        with pytest.raises(InvalidArgumentError, match=r"limit must be an integer >= 1 \(the number of hits\), got "):
            call()


def test_an_empty_collection_name_is_one_clear_error(client):
    with pytest.raises(InvalidArgumentError, match="collection name '' is empty; give a collection's or an alias's name"):
        client.query("", "omni@1", np.ones(32))


def test_wrong_model_query_and_write_refused(client, other_model, random_vectors):
    client.create_collection("g", "omni@1")
    client.upsert("g", "omni@1", random_vectors(5, 32))
    with pytest.raises(IncompatibleModelError, match=r"holds vectors of omni@1; a query with omni-indep@2 cannot search"):
        client.query("g", "omni-indep@2", random_vectors(1, 32))
    with pytest.raises(IncompatibleModelError, match=r"takes new points in 'omni@1' \(omni@1\); omni-indep@2 has no route"):
        client.upsert("g", "omni-indep@2", random_vectors(1, 32))


def test_same_version_other_fingerprint_is_an_error(client, trained):
    client.create_collection("g", "omni@1")
    forged = trained[1].with_(fingerprint="0" * 64)
    client2 = CompatClient(client.qdrant, registry=client.registry.root / "nowhere")
    with pytest.raises(FingerprintMismatchError, match="same name and version, different bytes"):
        client2.query("g", forged, np.ones(32))


def test_card_mismatching_registry_is_refused(client, trained):
    forged = trained[1].with_(fingerprint="f" * 64)
    with pytest.raises(FingerprintMismatchError, match="the registry holds"):
        client.create_collection("g", forged)


def test_unknown_collection(client):
    with pytest.raises(CollectionNotFoundError, match="collection 'nope' does not exist"):
        client.query("nope", "omni@1", np.ones(32))


def test_legacy_collection_needs_adoption(client, random_vectors):
    client.qdrant.create_collection("legacy", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    v = random_vectors(4, 32)
    client.qdrant.upsert("legacy", [models.PointStruct(id=i, vector=v[i].tolist(), payload={"k": i}) for i in range(4)])
    with pytest.raises(UnmanagedCollectionError, match="has no qdrant-compat metadata; declare which model"):
        client.query("legacy", "omni@1", v[0])
    meta = client.adopt_collection("legacy", "omni@1")
    assert meta.read == ""
    assert client.query("legacy", "omni@1", v[2], limit=1)[0].id == 2
    client.upsert("legacy", "omni@1", v[:1], ids=[10])
    assert client.qdrant.count("legacy").count == 5


def test_adopt_checks_dimension_and_distance(client):
    client.qdrant.create_collection("l1", vectors_config=models.VectorParams(size=31, distance=models.Distance.COSINE))
    with pytest.raises(IncompatibleModelError, match="has dimension 31 but omni@1 makes 32-d vectors"):
        client.adopt_collection("l1", "omni@1")
    client.qdrant.create_collection("l2", vectors_config=models.VectorParams(size=32, distance=models.Distance.DOT))
    with pytest.raises(IncompatibleModelError, match="uses Dot but omni@1 is a Cosine model"):
        client.adopt_collection("l2", "omni@1")
    client.qdrant.create_collection("l3", vectors_config={"a": models.VectorParams(size=32, distance=models.Distance.COSINE),
                                                          "b": models.VectorParams(size=32, distance=models.Distance.COSINE)})
    with pytest.raises(InvalidArgumentError, match=r"has vectors \['a', 'b'\]; say which one"):
        client.adopt_collection("l3", "omni@1")


def test_create_twice(client):
    client.create_collection("g", "omni@1")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        client.create_collection("g", "omni@1")
    assert client.create_collection("g", "omni@1", exist_ok=True).read == "omni@1"


def test_wraps_an_existing_client(trained):
    from qdrant_client import QdrantClient

    raw = QdrantClient(":memory:")
    cc = CompatClient(raw, registry=trained[0])
    cc.create_collection("g", "omni@1")
    assert raw.collection_exists("g")


def test_takes_a_store_and_only_one_backend(trained, random_vectors):
    from qdrant_client import QdrantClient

    from qdrant_compat.store import Store

    store = Store(QdrantClient(":memory:"))
    cc = CompatClient(store=store, registry=trained[0])
    assert cc.store is store
    cc.create_collection("g", "omni@1")
    cc.upsert("g", "omni@1", random_vectors(3, 32), ids=[1, 2, 3])
    assert store.count("g") == 3
    with pytest.raises(InvalidArgumentError, match="give a store, or a client / location / path / url, not both"):
        CompatClient(store=store, location=":memory:", registry=trained[0])


def test_a_query_through_an_alias_switched_to_a_dropped_collection_is_resolved_again(client, random_vectors):
    """The store says 'not found' in the house's terms (the embedded store raises ValueError, a server 404), and
    the client re-resolves a stale alias once rather than failing."""
    v = random_vectors(4, 32)
    for name in ("a", "b"):
        client.create_collection(name, "omni@1")
        client.upsert(name, "omni@1", v, ids=[1, 2, 3, 4])
    client.store.point_alias("live", "a")
    assert client.query("live", "omni@1", v[0], limit=1)[0].id == 1  # resolution of 'live' cached: 'a'
    client.store.point_alias("live", "b")
    client.store.delete("a")
    assert client.query("live", "omni@1", v[1], limit=1)[0].id == 2
    with pytest.raises(CollectionNotFoundError, match="'a'"):
        client.store.search("a", v[0].tolist(), using="omni@1", limit=1)
