"""Cards and the on-disk registry: round trips, immutability, tamper detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qdrant_compat import InputSpec, ModelCard, Registry
from qdrant_compat.cards import parse_ref
from qdrant_compat.errors import (
    CorruptArtifactError,
    FingerprintMismatchError,
    InvalidArgumentError,
    ModelNotFoundError,
)


def test_card_roundtrip(tmp_path, trained):
    card = trained[1]
    card.save(tmp_path / "c.json")
    assert ModelCard.load(tmp_path / "c.json") == card


def test_card_rejects_unknown_keys(tmp_path, trained):
    d = trained[1].to_dict()
    d["colour"] = "blue"
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(CorruptArtifactError, match=r"unknown key\(s\) \['colour'\] for ModelCard"):
        ModelCard.load(tmp_path / "c.json")


def test_card_bad_json_is_clear(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        ModelCard.load(tmp_path / "c.json")


@pytest.mark.parametrize("ref", ["omni", "a@b@c", "@1", "om ni@1"])
def test_bad_refs(ref):
    with pytest.raises(InvalidArgumentError):
        parse_ref(ref)


def test_input_spec_guards():
    with pytest.raises(InvalidArgumentError, match="input channels must be 1 or 3"):
        InputSpec(size=28, channels=2, mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(InvalidArgumentError, match="need 1 value"):
        InputSpec(size=28, channels=1, mean=(0.5, 0.5), std=(0.5,))


def test_registry_lists_and_verifies(trained):
    registry, card = trained[0], trained[1]
    assert card.ref in [c.ref for c in registry.list_models()]
    m = registry.get_model("omni@1")
    assert m.card.fingerprint == card.fingerprint and len(card.fingerprint) == 64
    w = m.classifier_weight()
    assert w is not None and w.shape == (len(card.classes), card.dim)


def test_unknown_model_lists_registered(trained):
    with pytest.raises(ModelNotFoundError, match=r"model nope@1 is not in registry .* \(registered: .*omni@1"):
        trained[0].get_model("nope@1")


def _copy_registry(trained, tmp_path):
    import shutil

    shutil.copytree(trained[0].root, tmp_path / "reg")
    return Registry(tmp_path / "reg")


def test_tampered_onnx_is_caught_naming_both_hashes(trained, tmp_path):
    reg = _copy_registry(trained, tmp_path)
    onnx_path = reg.get_model("omni@1").onnx_path
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    from qdrant_compat.cards import sha256_file

    with pytest.raises(FingerprintMismatchError, match=f"hashes to {sha256_file(onnx_path)} but its card records "
                       f"{trained[1].fingerprint}"):
        reg.get_model("omni@1")


def test_versions_are_immutable(trained, tmp_path):
    reg = _copy_registry(trained, tmp_path)
    m = reg.get_model("omni@1")
    other = tmp_path / "other.onnx"
    other.write_bytes(m.onnx_path.read_bytes() + b"\0")
    with pytest.raises(InvalidArgumentError, match="versions are immutable"):
        reg.register_model(other, m.card.with_(fingerprint=""))
    # the same bytes again are fine (idempotent)
    assert reg.register_model(m.onnx_path, m.card).fingerprint == m.card.fingerprint


def test_register_checks_classifier_shape(trained, tmp_path):
    reg = Registry(tmp_path / "r2")
    m = trained[0].get_model("omni@1")
    with pytest.raises(InvalidArgumentError, match=r"classifier weight must have shape \(num_classes, 32\)"):
        reg.register_model(m.onnx_path, m.card.with_(version="9"), classifier=np.zeros((3, 7), np.float32))


def test_corrupt_classifier_file(trained, tmp_path):
    reg = _copy_registry(trained, tmp_path)
    m = reg.get_model("omni@1")
    m.classifier_path.write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError, match="unreadable classifier weights"):
        m.classifier_weight()


def test_a_verified_card_is_hashed_once_per_file_state(trained, tmp_path, monkeypatch):
    """Queries and writes name their model each call: the registry verifies it once, and again only when its
    ONNX file or card changes (a tampered file is caught on the next call, not served from the cache)."""
    import qdrant_compat.registry as registry_mod

    reg = _copy_registry(trained, tmp_path)
    hashed: list[str] = []
    real = registry_mod.sha256_file
    monkeypatch.setattr(registry_mod, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    cards = [reg.verified_card("omni@1") for _ in range(5)]
    assert len(hashed) == 1 and all(c.fingerprint == trained[1].fingerprint for c in cards)
    reg.get_model("omni@1")  # get_model itself always verifies
    assert len(hashed) == 2
    onnx_path = reg.get_model("omni@1").onnx_path
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 0xFF
    import time

    time.sleep(0.05)  # past the file system's timestamp granularity (a few ms): the stamp sees the new mtime
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(FingerprintMismatchError, match="the file was changed after registration"):
        reg.verified_card("omni@1")
    with pytest.raises(ModelNotFoundError):
        reg.verified_card("nope@1")
