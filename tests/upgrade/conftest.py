from __future__ import annotations

import shutil

import numpy as np
import pytest

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
