"""The same sequence of store operations on every backend this machine can run (in memory, on disk, and a disk
store reopened by a new process-side client) gives the same observable results: what the upgrade relies on
(marks under a nested payload field, filters on them, vectors added and dropped, aliases, metadata, backups) is a
property of the seam, not of one backend. A Qdrant server runs the same sequence with QDRANT_COMPAT_TEST_URL."""

from __future__ import annotations

import os

import numpy as np
import pytest
from qdrant_client import QdrantClient

from qdrant_compat.errors import CollectionNotFoundError
from qdrant_compat.store import Store, has_vector, lacks_vector, mark_is, mark_not_in


def _stores(tmp_path):
    yield "memory", Store(QdrantClient(":memory:"))
    yield "disk", Store(QdrantClient(path=str(tmp_path / "disk")))
    if os.environ.get("QDRANT_COMPAT_TEST_URL"):
        yield "server", Store(QdrantClient(url=os.environ["QDRANT_COMPAT_TEST_URL"], check_compatibility=False))


def _story(store: Store, tmp_path, tag: str) -> dict:
    """Everything an upgrade does to a collection, recorded as plain values."""
    rng = np.random.default_rng(0)
    name = f"c-{tag}"
    for n in (name, f"{name}-r"):
        if store.exists(n):
            store.delete(n)
    store.create(name, {"m@1": (4, "Cosine")}, metadata={"qdrant_compat": {"v": 1}})
    ids = list(range(1, 21))
    v1 = rng.normal(size=(20, 4)).round(3).tolist()
    store.upsert(name, ids, [{"m@1": v} for v in v1], [{"image_path": f"/img/{i}.png", "k": i % 3} for i in ids])
    out: dict = {"shapes": store.vector_shapes(name), "count": store.count(name)}
    store.add_vector(name, "m@2", 3, "Dot")
    out["shapes_after_add"] = store.vector_shapes(name)
    v2 = {i: [float(i), 1.0, 0.5] for i in ids[:12]}
    store.write_vectors(name, "m@2", v2, mark_key="m_2", mark_field="_qdrant_compat",
                        marks={"extracted": ids[:12], "missing": ids[12:15], "failed": [ids[15]]})
    key = "_qdrant_compat.m_2"
    out["with_m2"] = store.count_with_vector(name, "m@2")
    out["has"] = store.count(name, has_vector("m@2"))
    out["lacks"] = store.count(name, lacks_vector("m@2"))
    out["extracted"] = store.count(name, mark_is(key, "extracted"))
    out["not_done"] = sorted(r.id for r in store.scroll_all(name, flt=mark_not_in(key, ["extracted", "missing", "failed"])))
    pages = list(store.scroll_pages(name, batch=7, with_vectors=["m@2"], with_payload=["_qdrant_compat", "k"]))
    out["pages"] = [len(p) for p in pages]
    out["payload_3"] = next(r.payload for p in pages for r in p if r.id == 3)
    out["vec_13"] = next(r.vector for p in pages for r in p if r.id == 13)  # no m@2: not returned
    out["search"] = [h.id for h in store.search(name, [1.0, 1.0, 0.5], using="m@2", limit=3)]
    store.set_metadata(name, "qdrant_compat", {"v": 2, "job": {"phase": "running"}})
    out["meta"] = store.metadata(name)
    store.point_alias(f"live-{tag}", name)
    out["resolve"] = store.resolve(f"live-{tag}") == name
    path = store.backup(name, tmp_path / f"backups-{tag}")
    out["restored"] = store.restore(path, f"{name}-r")
    out["restored_shapes"] = store.vector_shapes(f"{name}-r")
    out["restored_meta"] = store.metadata(f"{name}-r")
    store.drop_vector(name, "m@1")
    out["shapes_after_drop"] = store.vector_shapes(name)
    store.delete_points(name, ids[:2])
    out["count_after_delete"] = store.count(name)
    store.delete(f"{name}-r")
    try:
        store.search(f"{name}-r", [1.0, 0.0, 0.0], using="m@2", limit=1)
        out["search_missing"] = "no error"
    except CollectionNotFoundError:
        out["search_missing"] = "CollectionNotFoundError"
    return out


def test_every_backend_tells_the_same_story(tmp_path):
    stories = {}
    for kind, store in _stores(tmp_path):
        try:
            stories[kind] = _story(store, tmp_path, kind)
        finally:
            store.close()
    reopened = Store(QdrantClient(path=str(tmp_path / "disk")))  # what a resumed run sees after a restart
    try:
        assert reopened.count("c-disk") == stories["disk"]["count_after_delete"]
        assert reopened.vector_shapes("c-disk") == stories["disk"]["shapes_after_drop"]
        assert reopened.metadata("c-disk") == stories["disk"]["meta"]
    finally:
        reopened.close()
    first = stories["memory"]
    for kind, story in stories.items():
        assert story == first, kind
    # and the story is the expected one, not just the same everywhere
    assert first["shapes_after_add"] == {"m@1": (4, "Cosine"), "m@2": (3, "Dot")}
    assert (first["with_m2"], first["has"], first["lacks"], first["extracted"]) == (12, 12, 8, 12)
    assert first["not_done"] == list(range(17, 21))
    assert first["pages"] == [7, 7, 6] and first["payload_3"] == {"_qdrant_compat": {"m_2": "extracted"}, "k": 0}
    assert first["vec_13"] in ({}, None)
    assert first["search"] == [12, 11, 10]
    assert first["restored"] == 20 and first["restored_meta"] == first["meta"]
    assert first["shapes_after_drop"] == {"m@2": (3, "Dot")} and first["count_after_delete"] == 18
    assert first["search_missing"] == "CollectionNotFoundError"


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_missing_collection_is_the_same_error_on_every_backend(tmp_path, kind):
    store = Store(QdrantClient(":memory:") if kind == "memory" else QdrantClient(path=str(tmp_path / "disk")))
    try:
        with pytest.raises(CollectionNotFoundError):
            store.search("nope", [1.0], using="x", limit=1)
        with pytest.raises(CollectionNotFoundError):
            store.search_batch("nope", [[1.0]], using="x", limit=1)
    finally:
        store.close()
