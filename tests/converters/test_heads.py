"""Transformation heads: closed forms recover known maps, round trips, ONNX parity, guards."""

from __future__ import annotations

import numpy as np
import pytest

from converters import create_converter, list_converters, load_converter
from converters.base import l2n
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError


def _orth(d_in, d_out, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(max(d_in, d_out), max(d_in, d_out))))
    return q[:d_in, :d_out]


@pytest.mark.parametrize("d_in,d_out", [(16, 16), (16, 8), (8, 16)])
def test_procrustes_recovers_a_rotation(d_in, d_out):
    rng = np.random.default_rng(1)
    x = l2n(rng.normal(size=(2000, d_in)))
    q = _orth(d_in, d_out)
    y = x @ q
    conv = create_converter("procrustes", dim_in=d_in, dim_out=d_out)
    rep = conv.fit(x, y)
    w = conv.module.weight.detach().numpy()
    small = min(d_in, d_out)
    gram = w.T @ w if d_in >= d_out else w @ w.T
    assert np.allclose(gram, np.eye(small), atol=1e-4)  # (semi-)orthogonal
    if d_in <= d_out:
        assert rep.val_cosine > 0.999


def test_linear_recovers_a_linear_map():
    # targets are compared after normalisation, so the map is recoverable when it preserves norms up to scale
    rng = np.random.default_rng(2)
    x = l2n(rng.normal(size=(3000, 10)))
    a = 3.0 * _orth(10, 12, seed=7)
    y = x @ a
    conv = create_converter("linear", dim_in=10, dim_out=12, alpha=1e-6)
    rep = conv.fit(x, y)
    assert rep.val_cosine > 0.9999
    assert np.allclose(conv.transform(x[:5]), l2n(y[:5]), atol=1e-3)


def test_lowrank_is_exact_for_a_low_rank_map_and_factorised():
    rng = np.random.default_rng(3)
    x = l2n(rng.normal(size=(3000, 20)))
    a = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 16))
    y = x @ a
    lin = create_converter("linear", dim_in=20, dim_out=16, alpha=1e-6)
    lin_cos = lin.fit(x, y).val_cosine
    full = create_converter("lowrank", dim_in=20, dim_out=16, rank=16, alpha=1e-6)
    full.fit(x, y)
    assert np.allclose(full.transform(x[:50]), lin.transform(x[:50]), atol=1e-4)  # full rank = ridge
    conv = create_converter("lowrank", dim_in=20, dim_out=16, rank=3, alpha=1e-6)
    r3 = conv.fit(x, y).val_cosine
    r1 = create_converter("lowrank", dim_in=20, dim_out=16, rank=1, alpha=1e-6).fit(x, y).val_cosine
    assert r3 > lin_cos - 0.01 and r3 > r1 + 0.05
    assert tuple(conv.module.a.shape) == (20, 3) and tuple(conv.module.b_.shape) == (3, 16)
    with pytest.raises(InvalidArgumentError, match=r"rank must be in 1..16, got 40"):
        create_converter("lowrank", dim_in=20, dim_out=16, rank=40)


def test_mlp_beats_linear_on_a_nonlinear_map():
    rng = np.random.default_rng(4)
    x = l2n(rng.normal(size=(2000, 8)))
    y = np.concatenate([np.sin(3 * x), x ** 2], axis=1)
    lin = create_converter("linear", dim_in=8, dim_out=16).fit(x, y, seed=0)
    mlp_conv = create_converter("mlp", dim_in=8, dim_out=16, hidden=64, epochs=30, batch_size=128)
    mlp = mlp_conv.fit(x, y, seed=0)
    assert mlp.val_cosine > lin.val_cosine + 0.02
    assert mlp.extra["epochs_run"] >= 1


@pytest.mark.parametrize("kind", ["linear", "procrustes", "lowrank", "mlp"])
def test_save_load_and_onnx_parity(kind, tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 6)), rng.normal(size=(300, 5))
    opts = {"rank": 2} if kind == "lowrank" else {"epochs": 2, "hidden": 16} if kind == "mlp" else {}
    conv = create_converter(kind, dim_in=6, dim_out=5, **opts)
    conv.fit(x, y)
    conv.save(tmp_path / "h")
    again = load_converter(tmp_path / "h")
    assert np.array_equal(conv.transform(x), again.transform(x))
    assert conv.to_onnx(tmp_path / "h.onnx") <= 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "h.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"vector": x[:7].astype(np.float32)})[0]
    assert np.abs(got - conv.transform(x[:7])).max() <= 1e-5


def test_guards(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"unknown converter kind 'cubic'; choose one of \['linear'"):
        create_converter("cubic", dim_in=2, dim_out=2)
    assert set(list_converters()) == {"linear", "lowrank", "mlp", "procrustes"}
    conv = create_converter("linear", dim_in=4, dim_out=4)
    with pytest.raises(InvalidArgumentError, match=r"source embeddings: expected shape \(n, 4\), got \(20, 3\)"):
        conv.fit(np.ones((20, 3)), np.ones((20, 4)))
    bad = np.ones((20, 4))
    bad[3, 1] = np.nan
    with pytest.raises(InvalidArgumentError, match="contains NaN"):
        conv.fit(bad, np.ones((20, 4)))
    with pytest.raises(InvalidArgumentError, match="20 source but 19 target embeddings"):
        conv.fit(np.ones((20, 4)), np.ones((19, 4)))
    (tmp_path / "x").mkdir()
    with pytest.raises(CorruptArtifactError, match="config.json is missing"):
        load_converter(tmp_path / "x")
    conv.fit(np.random.default_rng(0).normal(size=(50, 4)), np.random.default_rng(1).normal(size=(50, 4)))
    conv.save(tmp_path / "y")
    (tmp_path / "y" / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(CorruptArtifactError, match="cannot be loaded"):
        load_converter(tmp_path / "y")
