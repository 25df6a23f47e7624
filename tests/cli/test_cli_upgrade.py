"""CLI: converter fit/list/inspect, convert, upgrade plan/run/status/cutover/rollback/cleanup, evaluate."""

from __future__ import annotations

import json

import pytest

from ..conftest import OMNIGLOT


@pytest.fixture()
def world(make_world, other_model):
    tmp, run = make_world(10)
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    return tmp, run


def test_full_upgrade_story(world):
    tmp, run = world
    npz = str(OMNIGLOT)
    fit = json.loads(run("--json", "converter", "fit", npz, "--source", "omni@1", "--target", "omni-indep@2",
                         "--kind", "linear", "--max-classes", "30", "--id", "v1-to-v2").output)
    assert fit["id"] == "v1-to-v2" and fit["fit"]["export_max_abs_diff"] <= 1e-4
    assert [c["id"] for c in json.loads(run("--json", "converter", "list").output)] == ["v1-to-v2"]
    assert json.loads(run("--json", "converter", "inspect", "v1-to-v2").output)["kind"] == "linear"
    plan = json.loads(run("--json", "upgrade", "plan", "g", "--to", "omni-indep@2").output)
    assert plan["strategy"] == "convert+backfill" and plan["converter"] == "v1-to-v2" and plan["points"] == 50
    dry = json.loads(run("--json", "upgrade", "run", "g", "--to", "omni-indep@2", "--dry-run").output)
    assert dry["dry_run"] is True
    assert "omni-indep@2" not in json.loads(run("--json", "collection", "info", "g").output)["vectors"]
    part = json.loads(run("--json", "upgrade", "run", "g", "--to", "omni-indep@2", "--batch-size", "20",
                          "--max-batches", "1").output)
    assert part["stopped_early"] is True
    res = json.loads(run("--json", "upgrade", "run", "g").output)
    assert res["remaining"] == 0 and res["job"]["phase"] == "filled"
    st = json.loads(run("--json", "upgrade", "status", "g").output)
    assert st["vectors"]["omni-indep@2"]["extracted"] == 50
    run("upgrade", "cutover", "g")
    assert json.loads(run("--json", "collection", "info", "g").output)["read"] == "omni-indep@2"
    img = str(sorted((tmp / "gallery").rglob("*.png"))[0])
    hits = json.loads(run("--json", "search", img, "--collection", "g", "--model", "omni-indep@2", "-k", "1").output)
    assert hits[0]["payload"]["image_path"].endswith(img.split("/")[-1])
    run("upgrade", "rollback", "g")
    assert json.loads(run("--json", "collection", "info", "g").output)["read"] == "omni@1"
    refused = run("upgrade", "run", "g", ok=False)  # a rolled-back job is not resumed silently
    assert "has no upgrade job to resume; name the target model" in refused.output
    again = json.loads(run("--json", "upgrade", "run", "g", "--to", "omni-indep@2").output)
    assert again["processed"] == 0 and again["remaining"] == 0  # the vectors were kept: nothing to redo
    run("upgrade", "cutover", "g")
    refused = run("upgrade", "cleanup", "g", ok=False)
    assert refused.exit_code == 1 and "pass --yes" in refused.output
    out = json.loads(run("--json", "upgrade", "cleanup", "g", "--yes", "--backup-dir", str(tmp / "bk")).output)
    assert out["drops"] == "omni@1" and (tmp / "bk").is_dir()


def test_convert_command_and_guards(world):
    tmp, run = world
    run("converter", "fit", str(OMNIGLOT), "--source", "omni@1", "--target", "omni-indep@2", "--kind", "procrustes",
        "--max-classes", "30", "--id", "p")
    out = json.loads(run("--json", "convert", "g", "--converter", "p").output)
    assert out["remaining"] == 0 and out["job"]["counts"]["converted"] == 50
    bad = run("upgrade", "cutover", "nope", ok=False)
    assert bad.exit_code == 1 and "error: collection 'nope' does not exist" in bad.output
    bad = run("converter", "inspect", "ghost", ok=False)
    assert "converter ghost is not in registry" in bad.output
    bad = run("converter", "fit", str(OMNIGLOT), "--source", "omni@1", "--target", "omni-indep@2", "--option", "rank", ok=False)
    assert "--option takes KEY=VALUE" in bad.output


def test_evaluate_table_json_heatmap_report(world):
    tmp, run = world
    out = json.loads(run("--json", "evaluate", str(OMNIGLOT), "--model", "omni@1", "--model", "omni-indep@2",
                         "--max-classes", "30", "--seen-classes", "20", "--heatmap", str(tmp / "m.png"),
                         "--report", str(tmp / "rep")).output)
    assert set(out["cells"]) == {"omni@1/omni@1", "omni@1/omni-indep@2", "omni-indep@2/omni@1", "omni-indep@2/omni-indep@2"}
    assert out["cells"]["omni@1/omni@1"]["top1"] > out["cells"]["omni-indep@2/omni@1"]["top1"]
    assert (tmp / "m.png").stat().st_size > 1000 and (tmp / "rep" / "index.html").exists()
    text = run("evaluate", str(OMNIGLOT), "--model", "omni@1", "--max-classes", "30").output
    assert text.startswith("| query/gallery | top-1 | top-5 | mAP |")
    bad = run("evaluate", str(OMNIGLOT), "--model", "omni@1", "--record", "omni@1", "--max-classes", "30", ok=False)
    assert "was not trained backward-compatibly" in bad.output


def test_a_corrected_image_field_on_resume_is_used(world):
    """A job started with the wrong --image-field marks every point missing; rerun with the right one, it must
    read that field (and try the missing points again), not silently keep the job's."""
    from qdrant_client import QdrantClient, models

    tmp, run = world  # 'g': 50 points indexed with omni@1
    q = QdrantClient(path=str(tmp / "store"))
    for rec in q.scroll("g", limit=1000, with_payload=True)[0]:
        q.set_payload("g", {"photo": rec.payload["image_path"]}, points=[rec.id])
    q.delete_payload("g", ["image_path"], points=models.Filter())
    q.close()
    first = json.loads(run("--json", "upgrade", "run", "g", "--to", "omni-indep@2", "--strategy", "backfill").output)
    assert first["job"]["counts"]["missing"] == 50
    again = json.loads(run("--json", "upgrade", "run", "g", "--image-field", "photo").output)
    assert again["job"]["image_field"] == "photo" and again["remaining"] == 0
    assert again["job"]["errors"] == []  # the first run's "not found" reasons went with the retried points
    st = json.loads(run("--json", "upgrade", "status", "g").output)
    assert st["vectors"]["omni-indep@2"]["extracted"] == 50 and st["vectors"]["omni-indep@2"]["missing"] == 0
