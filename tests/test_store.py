"""The store seen from another process: what a worker is given to open it (never a secret), and handing an
embedded store over to another process and taking it back."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import pytest
from qdrant_client import QdrantClient, models

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.store import Store

KEY = "s3cret-api-key-for-this-test"


def _server_store(**kw) -> Store:
    with warnings.catch_warnings():  # no server listens there: qdrant-client warns it cannot check the version
        warnings.simplefilter("ignore")
        return Store(QdrantClient(url="http://127.0.0.1:9", check_compatibility=False, **kw))


def test_a_server_spec_carries_the_address_and_never_the_key():
    spec = _server_store(api_key=KEY, timeout=7).spec()
    assert spec["url"] == "http://127.0.0.1:9" and spec["timeout"] == 7 and spec["api_key"] is True
    assert KEY not in repr(spec) and KEY.encode() not in pickle.dumps(spec)
    assert _server_store().spec()["api_key"] is False


def test_a_worker_takes_the_key_from_its_own_environment(monkeypatch):
    spec = _server_store(api_key=KEY).spec()
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    with pytest.raises(InvalidArgumentError, match="no QDRANT_API_KEY in its environment"):
        Store.from_spec(spec)
    monkeypatch.setenv("QDRANT_API_KEY", "the-workers-own-key")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = Store.from_spec(spec)
    assert opened.client.init_options["api_key"] == "the-workers-own-key"
    assert opened.client.init_options["url"] == "http://127.0.0.1:9" and opened.local_path is None


def test_stores_no_other_process_can_open_are_refused():
    with pytest.raises(InvalidArgumentError, match="in-memory store cannot be opened by another process"):
        Store(QdrantClient(location=":memory:")).spec()
    with pytest.raises(InvalidArgumentError, match="custom headers or a token provider"):
        _server_store(auth_token_provider=lambda: "token").spec()


def test_an_embedded_store_is_handed_to_another_process_and_taken_back(tmp_path):
    store = Store(QdrantClient(path=str(tmp_path / "s")))
    store.create("c", {"v": (2, "Cosine")})
    spec = store.spec()
    assert spec == {"path": str(tmp_path / "s"), "api_key": False}
    child = ("import sys, json; from qdrant_client import models; from qdrant_compat.store import Store; "
             "s = Store.from_spec(json.loads(sys.argv[1]), wait=5); "
             "s.client.upsert('c', [models.PointStruct(id=7, vector={'v': [1.0, 0.0]})]); print(s.count('c'))")
    import json

    with store.released():
        out = subprocess.run([sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
    assert store.count("c") == 1 and store.retrieve("c", [7])[0].id == 7  # taken back, with the child's write
    # while this process holds it, another one waits and then says why it cannot open it
    out = subprocess.run([sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "still held by another process after 5s" in out.stderr
    store.client.upsert("c", [models.PointStruct(id=8, vector={"v": [0.0, 1.0]})])
    assert store.count("c") == 2
    store.close()


def test_vector_shapes_speak_the_cards_distance_names():
    store = Store(QdrantClient(":memory:"))
    store.create("c", {"m@1": (8, "Cosine"), "m@2": (4, "Dot")})
    assert store.vector_shapes("c") == {"m@1": (8, "Cosine"), "m@2": (4, "Dot")}
    q = store.client
    q.create_collection("plain", vectors_config=models.VectorParams(size=3, distance=models.Distance.EUCLID))
    assert store.vector_shapes("plain") == {"": (3, "Euclid")}


def test_hits_are_changed_without_callers_knowing_their_type():
    from qdrant_compat.store import replace_payload, rescored

    store = Store(QdrantClient(":memory:"))
    store.create("c", {"m@1": (2, "Cosine")})
    store.upsert("c", [1], [{"m@1": [1.0, 0.0]}], [{"a": 1, "_qdrant_compat": {"x": "y"}}])
    hit = store.search("c", [1.0, 0.0], using="m@1", limit=1)[0]
    assert rescored(hit, 0.25).score == 0.25 and hit.score != 0.25  # a copy, the original untouched
    assert replace_payload(hit, {"a": 1}).payload == {"a": 1} and "_qdrant_compat" in hit.payload
