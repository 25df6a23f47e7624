"""The existing-collection example runs end to end (plain qdrant-client collection, a model trained with
plain torch, images over HTTP on 127.0.0.1) and leaves the collection upgraded."""

from __future__ import annotations

import subprocess
import sys

from qdrant_client import QdrantClient

from .conftest import ROOT


def test_existing_collection_example(tmp_path):
    out = tmp_path / "ex"
    res = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "examples" / "existing_collection" / "run.py"),
                          "--out", str(out), "--epochs", "2", "--v2-epochs", "2"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "verified on 50 images: median cosine 1.0000" in res.stdout
    assert "cut 'products' over to 'team@2'" in res.stdout and "rolled 'products' back to ''" in res.stdout
    q = QdrantClient(path=str(out / "qdrant"))
    meta = q.get_collection("products").config.metadata["qdrant_compat"]
    assert meta["read"] == "team@2" and meta["job"]["phase"] == "cut_over"
    assert q.count("products").count == 300
    q.close()
