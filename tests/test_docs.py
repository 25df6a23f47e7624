"""The API reference builds offline from the docstrings, and the public API is importable flat."""

from __future__ import annotations

import subprocess
import sys

import qdrant_compat

from .conftest import ROOT


def test_public_api_is_flat_and_documented():
    for name in ("CompatClient", "Registry", "ModelCard", "Embedder", "IncompatibleModelError", "train_model",
                 "TrainConfig", "export_and_register"):
        obj = getattr(qdrant_compat, name)
        assert obj.__doc__, name
    assert "Example" in qdrant_compat.CompatClient.__doc__


def test_api_reference_builds(tmp_path):

    res = subprocess.run([sys.executable, str(ROOT / "docs" / "build_api.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    page = (tmp_path / "qdrant_compat" / "client.html").read_text()
    assert "CompatClient" in page and "IncompatibleModelError" in page
    assert (tmp_path / "converters" / "procrustes.html").exists()
    assert '<h6 id="arguments">Arguments:</h6>' in page and '<h6 id="raises">Raises:</h6>' in page  # Google style
    assert 'id="CompatClient.query"' in page
    for internal in ("physical", "cached_meta", "put_meta"):  # marked @private: not listed
        assert f'id="CompatClient.{internal}"' not in page
    assert "doctest:" not in page


def test_readme_points_to_the_docs_it_names():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "make docs" in readme and "../shared" not in readme  # a clone has no ../shared
    import re

    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
