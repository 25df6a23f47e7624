"""ONNX export verifies itself; the embedder runs it with the card's preprocessing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from qdrant_compat.data import preprocess
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError
from qdrant_compat.export import export_embedding_model, read_metadata
from qdrant_compat.runtime.embedder import Embedder


def test_export_parity_on_fresh_inputs(trained, tmp_path):
    _, card, res, _ = trained
    rep = export_embedding_model(res.model, card.input, tmp_path / "m.onnx", name="omni", version="1")
    assert rep.max_abs_diff <= 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["embedding"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["qdrant_compat.name"] == "omni" and meta["qdrant_compat.version"] == "1"


def test_embedder_matches_torch_on_real_images(trained, omni_test):
    registry, card, res, _ = trained
    emb = Embedder(registry.get_model(card.ref), batch_size=16)
    imgs = [omni_test.get(i) for i in range(40)]
    got = emb.embed(imgs)
    with torch.no_grad():
        ref = res.model(torch.from_numpy(preprocess(imgs, card.input))).numpy()
    assert got.shape == (40, card.dim) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-4


def test_embedder_reads_files_and_reports_bad_ones(trained, tmp_path, omni_test):
    from PIL import Image

    registry, card, _, _ = trained
    Image.fromarray(omni_test.get(0)).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    emb = Embedder(registry.get_model(card.ref))
    assert emb.embed([str(tmp_path / "a.png")]).shape == (1, card.dim)
    with pytest.raises(CorruptArtifactError, match="bad.png cannot be read as an image"):
        emb.embed([str(tmp_path / "bad.png")])
    with pytest.raises(InvalidArgumentError, match="missing.png does not exist"):
        emb.embed([str(tmp_path / "missing.png")])
    with pytest.raises(InvalidArgumentError, match=r"expects input of shape \(n, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        emb.embed_tensor(np.zeros((2, 3, 28, 28), np.float32))


def test_corrupt_onnx_file_is_clear(tmp_path):
    from qdrant_compat.export import ort_session

    (tmp_path / "x.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(CorruptArtifactError, match="cannot be loaded by ONNX Runtime"):
        ort_session(tmp_path / "x.onnx")
