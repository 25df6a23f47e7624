"""Every command's ``--json`` output validates against its documented schema (docs/json-schema.json)."""

from __future__ import annotations

import json

import jsonschema
from qdrant_client import QdrantClient, models

from ..conftest import OMNIGLOT, ROOT

DOC = json.loads((ROOT / "docs" / "json-schema.json").read_text())


def _check(command: str, output: str) -> dict:
    schema = {"$defs": DOC["$defs"], **DOC["commands"][command]}
    data = json.loads(output)
    jsonschema.validate(data, schema)
    return data


def test_every_command_output_matches_its_schema(make_world, trained, other_model):
    tmp, run = make_world(8)
    gallery = str(tmp / "gallery")
    image = str(next((tmp / "gallery").rglob("*.png")))
    seen: set[str] = set()

    def j(command: str, *args: str) -> dict:
        seen.add(command)
        return _check(command, run("--json", *command.split(), *args).output)

    j("collection create", "g", "--model", "omni@1")
    j("index", gallery, "--collection", "g", "--model", "omni@1")
    j("search", image, "--collection", "g", "--model", "omni@1", "-k", "2")
    j("collection info", "g")
    j("collection list")
    j("model list")
    j("model inspect", "omni@1")
    j("train", str(OMNIGLOT), "--max-classes", "4", "--channels", "1", "--size", "28", "--dim", "16", "--epochs", "1",
      "--out", str(tmp / "ck"))
    j("export", str(tmp / "ck"), "--name", "tiny", "--version", "1")
    card = json.loads((tmp / "reg" / "models" / "tiny" / "1" / "card.json").read_text())
    card.update(version="2", fingerprint="")
    (tmp / "card2.json").write_text(json.dumps(card))
    reg = j("model register", str(tmp / "reg" / "models" / "tiny" / "1" / "model.onnx"), "--card", str(tmp / "card2.json"))
    assert reg["version"] == "2" and len(reg["fingerprint"]) == 64
    imported = j("model import", str(tmp / "reg" / "models" / "tiny" / "1" / "model.onnx"), "--name", "ext", "--version", "1",
                 "--mean", "0.5", "--std", "0.5")
    assert imported["training"]["imported"]["from"] == "onnx"
    conv = j("converter fit", str(OMNIGLOT), "--max-classes", "8", "--source", "omni@1", "--target", "omni-indep@2",
             "--kind", "linear")
    j("converter list")
    j("converter inspect", conv["id"])
    j("evaluate", str(OMNIGLOT), "--max-classes", "8", "--model", "omni@1", "--model", "omni-indep@2", "--adapter", conv["id"])
    plan = j("upgrade plan", "g", "--to", "omni-indep@2")
    assert plan["strategy"] == "convert+backfill"
    j("upgrade run", "g", "--to", "omni-indep@2")
    j("upgrade status", "g")
    j("upgrade cutover", "g")
    j("upgrade rollback", "g")
    run("upgrade", "cutover", "g")
    out = j("upgrade cleanup", "g", "--yes", "--backup-dir", str(tmp / "bk"))
    assert out["backup"].startswith(str(tmp / "bk"))

    # a second collection: convert only; and a plain qdrant-client collection, adopted
    run("collection", "create", "h", "--model", "omni@1")
    run("index", gallery, "--collection", "h", "--model", "omni@1")
    j("convert", "h", "--converter", conv["id"])
    # a blue-green upgrade through an alias
    run("collection", "create", "k", "--model", "omni@1")
    run("index", gallery, "--collection", "k", "--model", "omni@1")
    assert j("collection alias", "k-live", "k")["previous"] is None
    bg = j("upgrade plan", "k-live", "--to", "omni-indep@2", "--layout", "blue_green", "--strategy", "backfill")
    assert bg["layout"] == "blue_green" and bg["alias"] == "k-live"
    assert j("upgrade run", "k-live", "--to", "omni-indep@2", "--layout", "blue_green", "--strategy", "backfill")["sync"]
    assert j("upgrade status", "k-live")["blue_green"]["alias_points_at"] == "k"
    assert j("upgrade cutover", "k-live", "--grace", "0")["alias"] == "k-live"
    assert j("upgrade rollback", "k-live")["alias"] == "k-live"
    run("upgrade", "cutover", "k-live", "--grace", "0")
    assert j("upgrade cleanup", "k-live", "--yes", "--backup-dir", str(tmp / "bk2"))["drops_collection"]

    q = QdrantClient(path=str(tmp / "plain"))
    q.create_collection("legacy", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    q.close()
    seen.add("collection adopt")
    _check("collection adopt", run("--path", str(tmp / "plain"), "--json", "collection", "adopt", "legacy",
                                   "--model", "omni@1").output)
    assert seen == set(DOC["commands"]), sorted(set(DOC["commands"]) ^ seen)


def test_schema_enums_are_the_library_constants():
    from qdrant_compat.enums import Direction, Layout, Phase, Priority, Relation, Strategy, VectorState, choices

    for name, enum in (("strategy", Strategy), ("phase", Phase), ("vector_state", VectorState), ("relation", Relation),
                       ("priority", Priority), ("direction", Direction), ("layout", Layout)):
        assert DOC["$defs"][name]["enum"] == choices(enum), name
