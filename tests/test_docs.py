"""The API reference builds offline from the docstrings, and the public API is importable flat."""

from __future__ import annotations

import subprocess
import sys

import qdrant_compat


def test_public_api_is_flat_and_documented():
    for name in ("CompatClient", "Registry", "ModelCard", "Embedder", "IncompatibleModelError", "train_model",
                 "TrainConfig", "export_and_register"):
        obj = getattr(qdrant_compat, name)
        assert obj.__doc__, name
    assert "Example" in qdrant_compat.CompatClient.__doc__


def test_api_reference_builds(tmp_path):
    from .conftest import ROOT

    res = subprocess.run([sys.executable, str(ROOT / "docs" / "build_api.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    page = (tmp_path / "qdrant_compat" / "client.html").read_text()
    assert "CompatClient" in page and "IncompatibleModelError" in page
    assert (tmp_path / "converters" / "procrustes.html").exists()
