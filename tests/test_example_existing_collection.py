"""The existing-collection example runs end to end (plain qdrant-client collection, a model trained with
plain torch, images over HTTP on 127.0.0.1), upgrades it blue-green and leaves the alias on the new collection."""

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
    assert "verified on 50 of 50 randomly sampled points (seed 0): median cosine 1.0000" in res.stdout
    assert "one-time step" in res.stdout and "alias 'products-live' -> 'products'" in res.stdout
    green = "products--team-2"
    assert f"(alias 'products-live': 'products' -> '{green}')" in res.stdout
    assert "rolled 'products-live' back to '' (alias 'products-live' -> 'products')" in res.stdout
    assert "dropped collection 'products'" in res.stdout
    q = QdrantClient(path=str(out / "qdrant"))
    assert not q.collection_exists("products")
    assert {a.alias_name: a.collection_name for a in q.get_aliases().aliases} == {"products-live": green}
    meta = q.get_collection(green).config.metadata["qdrant_compat"]
    assert meta["read"] == "team@2" and meta["job"]["phase"] == "cleaned" and meta["job"]["cleanup"]["dropped"]
    assert q.count(green).count == 300
    assert len(list((out / "backups").glob("products-*.jsonl"))) == 1
    q.close()
