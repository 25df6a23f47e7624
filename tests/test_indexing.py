"""Indexing a folder: the pipelined read (threads reading ahead) gives what the plain loop gives."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qdrant_compat import CompatClient
from qdrant_compat.client import user_payload
from qdrant_compat.data import load_npz, write_image_folder
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.indexing import index_folder, point_id_for
from qdrant_compat.runtime.embedder import Embedder

from .conftest import OMNIGLOT


@pytest.fixture()
def gallery(tmp_path):
    src = load_npz(OMNIGLOT, "test")
    paths = write_image_folder(src, tmp_path / "gallery", np.flatnonzero(src.labels < 8))
    paths = sorted(paths)
    paths[3].write_bytes(b"not a png")  # unreadable
    shutil.copy(paths[4], paths[4].with_suffix(".txt"))  # not an image extension: not part of the folder
    return tmp_path / "gallery", paths


def test_the_pipeline_indexes_exactly_what_the_loop_indexes(gallery, trained):
    folder, paths = gallery
    client = CompatClient(location=":memory:", registry=trained[0])
    got = {}
    for name, workers in (("loop", 0), ("pipe", 2)):
        skipped: list[str] = []
        n = index_folder(client, name, "omni@1", folder, batch_size=7, read_workers=workers, skipped=skipped)
        recs = {r.id: (user_payload(r.payload), np.asarray(r.vector["omni@1"])) for r in client.scroll_all(name, with_vectors=True)}
        got[name] = (n, skipped, recs)
    (n0, s0, r0), (n2, s2, r2) = got["loop"], got["pipe"]
    assert n0 == n2 == len(paths) - 1 == len(r0) == len(r2)
    assert s0 == s2 and len(s0) == 1 and str(paths[3]) in s0[0]
    assert r0.keys() == r2.keys() and all(r0[k][0] == r2[k][0] for k in r0)
    ok = [p for p in paths if p != paths[3]]
    ref = Embedder(client.registry.get_model("omni@1")).embed([str(p) for p in ok])  # another code path
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    for p, v in zip(ok, ref, strict=True):
        assert np.allclose(r2[point_id_for(p)][1], v, atol=1e-5)
        assert np.allclose(r0[point_id_for(p)][1], v, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="read_workers must be >= 0"):
        index_folder(client, "x", "omni@1", folder, read_workers=-1)
    client.close()


def test_a_symlink_loop_in_the_folder_is_skipped_with_its_reason(gallery, trained):
    """Two links pointing at each other used to end the index with an unexpected RuntimeError (#20, finding 11)."""
    folder, paths = gallery
    cls = paths[0].parent
    (cls / "loop_a.png").symlink_to(cls / "loop_b.png")
    (cls / "loop_b.png").symlink_to(cls / "loop_a.png")
    client = CompatClient(location=":memory:", registry=trained[0])
    skipped: list[str] = []
    n = index_folder(client, "g", "omni@1", folder, batch_size=16, skipped=skipped)
    assert n == len(paths) - 1 == len(list(client.scroll_all("g")))  # every real image but the unreadable one
    loops = [s for s in skipped if "symbolic-link loop" in s]
    assert sorted(s.split(":")[0] for s in loops) == [str(cls / "loop_a.png"), str(cls / "loop_b.png")]
    client.close()
