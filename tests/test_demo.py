"""The README's demo, end to end on the Omniglot fixture (fewer epochs)."""

from __future__ import annotations

import importlib.util

from .conftest import ROOT


def test_demo_runs_and_refuses_the_wrong_model(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "quickstart" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--out", str(tmp_path / "out"), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "refused: collection 'gallery' holds vectors of omniglot@1" in out
    assert "indexed 500 images" in out
