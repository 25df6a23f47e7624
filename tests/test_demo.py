"""The README's demo, end to end on the Omniglot fixture (fewer epochs)."""

from __future__ import annotations

import importlib.util

from .conftest import ROOT


def test_demo_tells_the_whole_story(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "quickstart" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--out", str(tmp_path / "out"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "750 points each in vector 'omniglot@1'" in out
    assert "old classifier rows: 100 kept, 50 synthesised for new classes" in out
    assert "independent v2 refused: collection 'gallery' holds vectors of omniglot@1" in out
    assert "backfill complete, cut over" in out and "cleanup dropped vector 'omniglot@1'" in out
    assert "final metadata of 'gallery-b': vectors ['omniglot-indep@2']" in out
