from __future__ import annotations

import shutil

import numpy as np
import pytest
from qdrant_client import models

from qdrant_compat import CompatClient, Registry
from qdrant_compat.data import load_npz, write_image_folder
from qdrant_compat.indexing import index_folder

from ..conftest import OMNIGLOT


@pytest.fixture()
def world(tmp_path, trained, other_model):
    """An embedded store with collection 'g' of 150 real images indexed by omni@1 (payload image_path)."""
    shutil.copytree(trained[0].root, tmp_path / "reg")
    src = load_npz(OMNIGLOT, "test")
    write_image_folder(src, tmp_path / "gallery", np.flatnonzero(src.labels < 30))
    registry = Registry(tmp_path / "reg")
    client = CompatClient(path=str(tmp_path / "store"), registry=registry, meta_ttl=0)
    index_folder(client, "g", "omni@1", tmp_path / "gallery")
    yield tmp_path, client
    client.close()


def payloads(client, name="g"):
    from qdrant_compat.client import user_payload

    return {r.id: user_payload(r.payload) for r in client.scroll_all(name)}


@pytest.fixture()
def legacy(world):
    """'legacy': made with plain qdrant-client (one unnamed vector, omni@1 embeddings, payload image_path),
    adopted as omni@1; applications query it through alias 'live'."""
    tmp, client = world
    recs = list(client.scroll_all("g", with_vectors=True))
    q = client.qdrant
    q.create_collection("legacy", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    q.upsert("legacy", [models.PointStruct(id=r.id, vector=r.vector["omni@1"],
                                           payload={"image_path": r.payload["image_path"], "n": i})
                        for i, r in enumerate(recs)])
    q.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name="legacy", alias_name="live"))])
    client.adopt_collection("legacy", "omni@1")
    return tmp, client
