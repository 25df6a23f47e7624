"""CLI scenarios through click's runner, on an embedded store in a temp folder."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def world(make_world):
    return make_world(6)


def test_model_list_and_inspect(world):
    _, run = world
    out = json.loads(run("--json", "model", "list").output)
    assert "omni@1" in [r["ref"] for r in out]
    card = json.loads(run("--json", "model", "inspect", "omni@1").output)
    assert card["dim"] == 32 and card["has_classifier"] is True


def test_index_search_info(world):
    tmp, run = world
    res = json.loads(run("--json", "index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1").output)
    assert res["indexed"] == 30
    # indexing again updates, never duplicates (stable ids per path)
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    info = json.loads(run("--json", "collection", "info", "g").output)
    assert info["points"] == 30 and info["vectors"]["omni@1"]["points"] == 30
    img = sorted((tmp / "gallery").rglob("*.png"))[0]
    hits = json.loads(run("--json", "search", str(img), "--collection", "g", "--model", "omni@1", "-k", "3").output)
    assert hits[0]["payload"]["image_path"] == str(img.resolve()) and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert "_qdrant_compat" not in hits[0]["payload"]
    listed = json.loads(run("--json", "collection", "list").output)
    assert listed == [{"name": "g", "managed": True, "models": ["omni@1"]}]


def test_errors_are_one_line_and_nonzero(world):
    tmp, run = world
    img = str(next((tmp / "gallery").rglob("*.png")))
    res = run("search", img, "--collection", "nope", "--model", "omni@1", ok=False)  # a mistyped --path
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert res.output.startswith(f"error: no embedded Qdrant store at {tmp / 'store'}: check --path")
    assert not (tmp / "store").exists()  # never created silently
    run("collection", "create", "h", "--model", "omni@1")
    res = run("search", img, "--collection", "nope", "--model", "omni@1", ok=False)
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == ["error: collection 'nope' does not exist (collections: h)"]
    res = run("collection", "create", "g", "--model", "ghost@3", ok=False)
    assert res.exit_code == 1 and "error: model ghost@3 is not in registry" in res.output
    res = run("collection", "create", "g", "--model", "ghost", ok=False)
    assert "must look like NAME@VERSION" in res.output


def test_train_and_register_from_image_folder(world):
    tmp, run = world
    out = json.loads(run("--json", "train", str(tmp / "gallery"), "--out", str(tmp / "ck"), "--channels", "1",
                         "--size", "28", "--dim", "16", "--epochs", "1", "--batch-size", "8",
                         "--register", "folder@1").output)
    assert out["registered"] == "folder@1" and out["images"] == 30 and out["export_max_abs_diff"] <= 1e-4
    res = json.loads(run("--json", "export", str(tmp / "ck"), "--name", "folder", "--version", "2").output)
    assert res["registered"] == "folder@2"


def test_adopt_legacy_collection(world):
    tmp, run = world
    from qdrant_client import QdrantClient, models

    q = QdrantClient(path=str(tmp / "store"))
    q.create_collection("legacy", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    q.close()
    res = run("collection", "info", "legacy", ok=False)
    assert "has no qdrant-compat metadata" in res.output
    run("collection", "adopt", "legacy", "--model", "omni@1")
    info = json.loads(run("--json", "collection", "info", "legacy").output)
    assert info["vectors"][""]["model"] == "omni@1"


def test_json_no_progress_and_verbose_after_the_subcommand(world):
    """--json / --no-progress / -v work after the subcommand too (``collection info g --json``)."""
    tmp, run = world
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    before = json.loads(run("--json", "collection", "info", "g").output)
    assert json.loads(run("collection", "info", "g", "--json", "-vv").output) == before
    img = sorted((tmp / "gallery").rglob("*.png"))[0]
    hits = json.loads(run("search", str(img), "--collection", "g", "--model", "omni@1", "-k", "2", "--json").output)
    assert len(hits) == 2
    # a global option's value that names a subcommand is not taken for the subcommand
    from click.testing import CliRunner

    from qdrant_compat.cli.main import cli

    res = CliRunner().invoke(cli, ["--registry", str(tmp / "reg"), "--path", "model", "model", "list", "--json"])
    assert res.exit_code == 0 and "omni@1" in [r["ref"] for r in json.loads(res.output)]
