"""Fault injection through the CLI: every bad input or fault ends in one line on stderr and a documented exit
code (1 error, 2 usage, 3 busy), never a traceback, and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from qdrant_client import QdrantClient, models

from qdrant_compat.metadata import META_KEY

from ..conftest import ROOT


@pytest.fixture()
def world(make_world):
    tmp, run = make_world(4)
    run("collection", "create", "g", "--model", "omni@1")
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    return tmp, run


def one_line(res, code: int = 1) -> str:
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.fixture()
def tiny_fs(tmp_path):
    """A small tmpfs (root only): ``tiny_fs(kib)`` mounts one and returns its path."""
    mounted = []

    def make(kib: int):
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        d = tmp_path / f"tiny{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_unreachable_server_is_one_line(world):
    tmp, run = world
    line = one_line(run("--url", "http://127.0.0.1:9", "collection", "list", ok=False))
    assert line.startswith("error: cannot reach the Qdrant server http://127.0.0.1:9")


def test_a_second_command_on_a_busy_embedded_store_exits_busy(world):
    tmp, run = world
    holder = QdrantClient(path=str(tmp / "store"))  # another process's role: it holds the store's lock
    try:
        res = subprocess.run([sys.executable, "-m", "qdrant_compat.cli.main", "--path", str(tmp / "store"), "--registry",
                              str(tmp / "reg"), "upgrade", "status", "g"], capture_output=True, text=True, cwd=ROOT)
    finally:
        holder.close()
    if res.returncode == 0:
        pytest.skip("this qdrant-client does not lock the embedded store against a second process")
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by another process" in lines[0]


@pytest.mark.parametrize("args, message", [
    (["search", "IMG", "--collection", "g", "--model", "omni@1", "-k", "0"], "Invalid value for '--limit'"),
    (["index", "GALLERY", "--collection", "g", "--model", "omni@1", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["upgrade", "run", "g", "--to", "omni@2", "--strategy", "teleport"], "Invalid value for '--strategy'"),
])
def test_usage_errors_exit_2(world, args, message):
    tmp, run = world
    args = [a.replace("IMG", str(next((tmp / "gallery").rglob("*.png")))).replace("GALLERY", str(tmp / "gallery")) for a in args]
    res = run(*args, ok=False)
    assert res.exit_code == 2 and message in res.output


@pytest.mark.parametrize("name", ["a/b", "x" * 300, "new\nline", " lead"])
def test_bad_collection_names_are_refused(world, name):
    tmp, run = world
    line = one_line(run("collection", "create", name, "--model", "omni@1", ok=False))
    assert "is not allowed: use letters, digits" in line


def test_non_utf8_file_names_are_refused_before_anything_is_written(world):
    tmp, run = world
    cls = next(p for p in (tmp / "gallery").iterdir() if p.is_dir())
    src = next(cls.glob("*.png"))
    bad = os.path.join(os.fsencode(cls), b"caf\xe9.png")
    with open(bad, "wb") as f:
        f.write(src.read_bytes())
    line = one_line(run("index", str(tmp / "gallery"), "--collection", "fresh", "--model", "omni@1", ok=False))
    assert "is not valid UTF-8; rename it (nothing was indexed)" in line
    assert all(r["name"] != "fresh" for r in json.loads(run("--json", "collection", "list").output))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(version="2\n"), "model version '2\\\\n' is not allowed"),
    (lambda c: c.update(version="2", dim="32"), "expected int, got str"),
    (lambda c: c.update(version="2", dim=64), "card for omni@2 says dim 64 but model.onnx outputs shape (2, 32)"),
    (lambda c: c["input"].update(size=40) or c.update(version="2"), "says input (n, 1, 40, 40) but model.onnx fixes axis 2 to 28"),
])
def test_cards_that_do_not_describe_the_graph_are_refused(world, edit, message):
    tmp, run = world
    d = tmp / "reg" / "models" / "omni" / "1"
    card = json.loads((d / "card.json").read_text())
    card.update(fingerprint="", seal="")
    edit(card)
    (tmp / "card.json").write_text(json.dumps(card))
    line = one_line(run("model", "register", str(d / "model.onnx"), "--card", str(tmp / "card.json"), ok=False))
    assert message.replace("\\\\", "\\") in line or message in line, line
    assert not list((tmp / "reg").glob(".tmp-*"))  # nothing half-registered is left


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["input"].update(mean=[0.5]), "was changed after registration"),
    (lambda c: c["lineage"].update(parent="ghost@1", relation="bct",
                                   evidence={"criterion_met": True}), "was changed after registration"),
])
def test_edited_cards_are_refused_on_load(world, edit, message):
    tmp, run = world
    path = tmp / "reg" / "models" / "omni" / "1" / "card.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))
    line = one_line(run("search", str(next((tmp / "gallery").rglob("*.png"))), "--collection", "g", "--model", "omni@1",
                        ok=False))
    assert message in line


@pytest.mark.parametrize("block, message", [
    ({"schema": 1, "read": "ghost", "write": ["ghost"], "edges": [], "job": None,
      "vectors": {"omni@1": {"model": "omni@1", "fingerprint": "f", "dim": 32}}}, "read names vector(s) ['ghost']"),
    ({"schema": 1, "read": "", "write": [], "vectors": ["omni@1"], "edges": [], "job": None}, "expected an object, got list"),
])
def test_malformed_collection_metadata_is_one_line(world, block, message):
    tmp, run = world
    q = QdrantClient(path=str(tmp / "store"))
    q.create_collection("bad", vectors_config={"omni@1": models.VectorParams(size=32, distance=models.Distance.COSINE)},
                        metadata={META_KEY: block})
    q.close()
    assert message in one_line(run("collection", "info", "bad", ok=False))


def test_disk_full_during_cleanup_backup_keeps_everything(world, tiny_fs, other_model, omni_train):
    tmp, run = world
    from qdrant_compat import Registry
    from qdrant_compat.bridges import fit_and_register

    fit_and_register(Registry(tmp / "reg"), "omni@1", "omni-indep@2", "linear", images=omni_train, conv_id="c")
    run("upgrade", "run", "g", "--to", "omni-indep@2", "--strategy", "convert")
    run("upgrade", "cutover", "g", "--grace", "0")
    full = tiny_fs(16)  # far too small for a backup of the collection
    line = one_line(run("upgrade", "cleanup", "g", "--yes", "--backup-dir", str(full), ok=False))
    assert line.startswith("error: disk full") and "run the same command again" in line
    assert list(full.iterdir()) == []  # no partial backup left to be mistaken for one
    info = json.loads(run("--json", "collection", "info", "g").output)
    assert info["vectors"]["omni@1"]["points"] == info["points"]  # the old vector was not dropped
    assert info["job"]["cleanup"] is None and info["job"]["phase"] == "cut_over"
    out = json.loads(run("--json", "upgrade", "cleanup", "g", "--yes", "--backup-dir", str(tmp / "bk")).output)
    assert out["backup"].startswith(str(tmp / "bk"))


def test_disk_full_registry_leaves_no_half_registered_model(world, tiny_fs):
    tmp, run = world
    reg = tiny_fs(64)
    src = tmp / "reg" / "models" / "omni" / "1"
    card = json.loads((src / "card.json").read_text())
    card.update(fingerprint="", seal="")
    (tmp / "card.json").write_text(json.dumps(card))
    if (src / "model.onnx").stat().st_size < 64 * 1024:
        pytest.skip("the model fits the small filesystem")
    line = one_line(run("--registry", str(reg), "model", "register", str(src / "model.onnx"), "--card",
                        str(tmp / "card.json"), ok=False))
    assert line.startswith("error: disk full")
    assert not any(p.name.startswith(".tmp-") for p in reg.rglob("*"))


def test_read_only_store_is_one_line(world, tiny_fs, tmp_path):
    tmp, run = world
    ro = tiny_fs(8192)
    run("--path", str(ro / "store"), "collection", "create", "r", "--model", "omni@1")
    r = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
    res = run("--path", str(ro / "store"), "index", str(tmp / "gallery"), "--collection", "r", "--model", "omni@1", ok=False)
    line = one_line(res)
    assert "read-only" in line or "cannot write" in line, line


def test_verbose_shows_the_traceback(world):
    tmp, run = world
    res = run("-v", "--url", "http://127.0.0.1:9", "collection", "list", ok=False)
    assert res.exit_code == 1 and "Traceback" in res.output and res.output.strip().splitlines()[-1].startswith("error: ")


def test_index_skips_poison_images_and_never_leaves_an_empty_collection(world):
    tmp, run = world
    from tests.upgrade.test_faults import _png_bomb

    paths = sorted((tmp / "gallery").rglob("*.png"))
    _png_bomb(paths[0])
    paths[1].write_bytes(b"")
    out = json.loads(run("--json", "index", str(tmp / "gallery"), "--collection", "p", "--model", "omni@1").output)
    assert out["indexed"] == len(paths) - 2 and len(out["skipped"]) == 2
    assert any("DecompressionBomb" in s for s in out["skipped"])
    # an image folder where nothing can be read creates no collection bound to the model
    bad = tmp / "allbad" / "c"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"")
    out = json.loads(run("--json", "index", str(tmp / "allbad"), "--collection", "empty", "--model", "omni@1").output)
    assert out["indexed"] == 0
    assert all(r["name"] != "empty" for r in json.loads(run("--json", "collection", "list").output))
    # search with a poison image is one line, not a traceback
    line = one_line(run("search", str(paths[0]), "--collection", "p", "--model", "omni@1", ok=False))
    assert "cannot be read as an image" in line


@pytest.mark.parametrize("args", [("collection", "info", ""), ("upgrade", "plan", "", "--to", "omni@1"),
                                  ("upgrade", "status", "")])
def test_an_empty_collection_name_is_one_line(world, args):
    """``''`` as a collection name used to end in "unexpected ValueError" (#20, finding 11)."""
    _, run = world
    line = one_line(run(*args, ok=False))
    assert "collection name '' is empty; give a collection's or an alias's name (collections: g)" in line
