"""Blue-green upgrades: a legacy unnamed-vector collection, filled into a new collection, switched by an alias."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qdrant_compat import CompatClient
from qdrant_compat.bridges import fit_and_register
from qdrant_compat.enums import Layout, Phase
from qdrant_compat.errors import JobLockedError, UpgradeError
from qdrant_compat.metadata import Lock
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.store import Capabilities, Store
from qdrant_compat.upgrade import cleanup, cutover, plan_upgrade, rollback, run_upgrade, upgrade_status
from qdrant_compat.upgrade.verify import check_fill

GREEN = "legacy--omni-indep-2"


def _snapshot(q: QdrantClient, name: str) -> dict:
    return {r.id: (r.payload, np.round(r.vector, 5).tolist()) for r in q.scroll(name, limit=1000, with_vectors=True)[0]}


def _reference(client):
    emb = Embedder(client.registry.get_model("omni-indep@2"))
    return lambda recs: emb.embed([r.payload["image_path"] for r in recs])


def test_plan_chooses_blue_green_where_a_named_vector_cannot_be_added(legacy, monkeypatch):
    tmp, client = legacy
    old = Capabilities(embedded=False, version="1.15.2", named_vector_changes=False, snapshots=True)
    monkeypatch.setattr(Store, "capabilities", lambda self: old)
    p = plan_upgrade(client, "legacy", "omni-indep@2")
    assert p.layout == Layout.BLUE_GREEN and p.green == GREEN and p.alias == "live"
    assert any("1.15.2" in r and ">= 1.18" in r for r in p.reasons)
    # the old vector is unnamed: plain qdrant-client queries through the alias must name it after the cutover
    assert any("holds one unnamed vector" in r and "using='omni-indep@2'" in r and "'omni@1' for the old" in r
               for r in p.reasons)
    # the same collection queried by its own name only: plan shows the one-time step
    client.qdrant.update_collection_aliases(change_aliases_operations=[models.DeleteAliasOperation(
        delete_alias=models.DeleteAlias(alias_name="live"))])
    p = plan_upgrade(client, "legacy", "omni-indep@2")
    assert p.alias is None and any("one-time step" in r and "collection alias legacy-live legacy" in r for r in p.reasons)
    with pytest.raises(UpgradeError, match="has none: applications that query 'legacy' by its own name"):
        run_upgrade(client, "legacy", "omni-indep@2", dry_run=True)  # a dry run refuses what the run refuses
    with pytest.raises(UpgradeError, match="has none: applications that query 'legacy' by its own name"):
        run_upgrade(client, "legacy", "omni-indep@2")
    assert run_upgrade(client, "legacy", "omni-indep@2", alias="new-live", dry_run=True).remaining == 150
    assert "new-live" not in client.store.aliases()  # a dry run creates nothing
    assert not client.store.exists(GREEN)  # refused before anything was made
    with pytest.raises(UpgradeError, match="named vector cannot be added in place"):
        plan_upgrade(client, "legacy", "omni-indep@2", layout="in_place")


def test_blue_green_end_to_end_leaves_the_old_collection_untouched_until_cleanup(legacy):
    tmp, client = legacy
    q = client.qdrant
    before = _snapshot(q, "legacy")
    img = next(iter(before.values()))[0]["image_path"]
    rep = run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green", batch_size=32,
                      max_batches=2)
    assert rep.stopped_early and rep.sync["copied"] == 150
    # a write through CompatClient mid-fill reaches both collections (and the alias still serves the old one)
    v = Embedder(client.registry.get_model("omni@1")).embed([img])
    client.upsert("live", "omni@1", v, ids=[10_000], payloads=[{"image_path": img, "n": -1}])
    assert q.count("legacy").count == 151 and q.count(GREEN).count == 151
    client.upsert("live", "omni@1", v, ids=[10_001], payloads=[{"image_path": img, "n": -2}])
    client.delete("live", [10_001])  # deletes through CompatClient reach both as well
    assert q.count("legacy").count == 151 and q.count(GREEN).count == 151
    assert not q.retrieve(GREEN, [10_001]) and not q.retrieve("legacy", [10_001])
    rep = run_upgrade(client, "live")  # resume: the recorded blue-green job
    assert rep.remaining == 0 and rep.job.phase == Phase.FILLED and rep.job.layout == Layout.BLUE_GREEN
    res = check_fill(client, GREEN, "omni-indep@2", reference=_reference(client))
    assert res["ok"] and res["points"] == 151, res
    assert sorted(client.store.vector_params(GREEN)) == ["omni-indep@2", "omni@1"]
    old_now = _snapshot(q, "legacy")
    assert {k: old_now[k] for k in before} == before  # blue: not a point, payload or vector changed

    st = upgrade_status(client, "live")
    assert st.collection == GREEN and st.blue_green["alias_points_at"] == "legacy"
    out = cutover(client, "live", grace=0.1)
    assert out.alias == "live" and client.store.resolve("live") == GREEN
    hits = client.query("live", "omni-indep@2", Embedder(client.registry.get_model("omni-indep@2")).embed([img])[0], limit=1)
    assert hits and hits[0].payload["image_path"] == img
    assert client.get_meta("legacy").job.phase == Phase.CUT_OVER

    rollback(client, "live", grace=0.1)
    assert client.store.resolve("live") == "legacy"
    cutover(client, "live", grace=0.1)
    assert client.store.resolve("live") == GREEN
    done = cleanup(client, "live", yes=True, backup_dir=tmp / "bk")
    assert not client.store.exists("legacy") and done.drops == "legacy"
    assert client.get_meta(GREEN).job.phase == Phase.CLEANED
    with pytest.raises(UpgradeError, match="was dropped by cleanup.*restore its backup"):
        rollback(client, "live", grace=0.1)
    # the backup really holds the old collection
    assert client.store.restore(done.backup, "legacy-restored") == 151
    assert {k: v for k, v in _snapshot(q, "legacy-restored").items() if k in before} == before
    assert cleanup(client, "live", yes=True).resumed  # idempotent


def test_cutover_refuses_when_the_old_collection_changed_outside_qdrant_compat(legacy):
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    q = client.qdrant
    ids = [r.id for r in q.scroll("legacy", limit=3)[0]]
    q.set_payload("legacy", {"n": 999}, points=[ids[0]])  # another app, plain qdrant-client, on the old collection
    q.delete("legacy", points_selector=models.PointIdsList(points=[ids[1]]))
    with pytest.raises(UpgradeError, match="2 point\\(s\\) differ between 'legacy' and '" + GREEN):
        cutover(client, "live", grace=0)
    assert client.store.resolve("live") == "legacy" and client.get_meta("legacy").job.phase == Phase.FILLED
    rep = run_upgrade(client, "live")  # syncs the change and the deletion, re-extracts the changed point
    assert rep.sync["replaced"] == 1 and rep.sync["deleted"] == 1 and rep.remaining == 0
    cutover(client, "live", grace=0)
    assert client.store.resolve("live") == GREEN and q.count(GREEN).count == 149
    assert q.retrieve(GREEN, [ids[0]])[0].payload["n"] == 999


def test_rollback_refused_while_the_new_collection_holds_points_the_old_lacks(legacy):
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    out = cutover(client, "live", grace=0)
    assert not out.source_kept_in_sync  # omni-indep@2 cannot write omni@1 vectors: green does not mirror back
    img = client.qdrant.scroll(GREEN, limit=1)[0][0].payload["image_path"]
    v = Embedder(client.registry.get_model("omni-indep@2")).embed([img])
    client.upsert("live", "omni-indep@2", v, ids=[20_000])
    with pytest.raises(UpgradeError, match="1 point\\(s\\) written to '" + GREEN + "' since cutover"):
        rollback(client, "live", grace=0.1)
    assert client.store.resolve("live") == GREEN


def test_a_write_is_refused_whole_when_the_new_collection_vanished(legacy):
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green", max_batches=1)
    client.qdrant.delete_collection(GREEN)  # someone dropped it by hand mid-upgrade
    v = np.asarray(client.qdrant.scroll("legacy", limit=1, with_vectors=True)[0][0].vector, np.float32)
    with pytest.raises(UpgradeError, match=f"copies every write to '{GREEN}'.*does not exist; nothing was written"):
        client.upsert("live", "omni@1", v, ids=[30_000])
    assert not client.qdrant.retrieve("legacy", [30_000])
    rep = run_upgrade(client, "live")  # recreated and refilled
    assert rep.remaining == 0 and client.qdrant.count(GREEN).count == 150


def test_blue_green_convert_rewrites_every_point_without_images(legacy, omni_train):
    tmp, client = legacy
    fit_and_register(client.registry, "omni@1", "omni-indep@2", "linear", images=omni_train, conv_id="o2n")
    p = plan_upgrade(client, "live", "omni-indep@2", layout="blue_green")
    assert p.strategy == "convert+backfill" and p.converter == "o2n"
    rep = run_upgrade(client, "live", "omni-indep@2", strategy="convert", layout="blue_green")
    assert rep.remaining == 0 and rep.job.counts["converted"] == 150
    old = {r.id: r.vector for r in client.qdrant.scroll("legacy", limit=500, with_vectors=True)[0]}
    new = {r.id: r.vector["omni-indep@2"] for r in client.qdrant.scroll(GREEN, limit=500, with_vectors=True)[0]}
    ids = sorted(old)
    want = client.converters.apply("o2n", np.asarray([old[i] for i in ids], np.float32))
    got = np.asarray([new[i] for i in ids], np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(unit(got), unit(want), atol=1e-4)
    cutover(client, "live", grace=0)
    assert client.store.resolve("live") == GREEN


def test_the_job_lock_holds_against_a_second_runner(legacy):
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green", max_batches=1)
    meta = client.get_meta("legacy")
    meta.job.lock = Lock("elsewhere:1:abc", time.time() + 300)
    client.put_meta("legacy", meta)
    with pytest.raises(JobLockedError, match="elsewhere:1:abc"):
        run_upgrade(client, "live")


def test_readers_through_the_alias_never_fail_during_cutover_and_rollback(legacy, omni_train):
    tmp, client = legacy
    # a new->old adapter keeps the old vector in sync after cutover, so old-model readers go on working there
    fit_and_register(client.registry, "omni-indep@2", "omni@1", "linear", direction="new_to_old", images=omni_train,
                     conv_id="n2o")
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    reader = CompatClient(client.qdrant, registry=client.registry, meta_ttl=0)
    qv = np.asarray(client.qdrant.scroll("legacy", limit=1, with_vectors=True)[0][0].vector, np.float32)
    answers, failures, stop = [0], [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                hits = reader.query("live", "omni@1", qv, limit=3)
                if len(hits) != 3:
                    failures.append(f"{len(hits)} hits")
                answers[0] += 1
            except Exception as exc:  # any failure is what the test looks for
                failures.append(repr(exc))

    t = threading.Thread(target=read)
    t.start()
    try:
        for step in (lambda: cutover(client, "live", grace=0.2), lambda: rollback(client, "live", grace=0.2),
                     lambda: cutover(client, "live", grace=0.2)):
            time.sleep(0.2)
            step()
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert client.store.resolve("live") == GREEN
    assert not failures, failures[:3]
    assert answers[0] > 10


def test_a_query_never_pairs_one_collections_metadata_with_the_others_points(legacy):
    """The alias flips between the reader's metadata read and its search (a cutover landing mid-query): the
    query still runs on the collection whose metadata it read."""
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    cutover(client, "live", grace=0)
    reader = CompatClient(client.qdrant, registry=client.registry, meta_ttl=0)
    read_meta = reader.cached_meta

    def meta_then_flip(name):
        meta = read_meta(name)
        client.store.point_alias("live", "legacy" if client.store.resolve("live") == GREEN else GREEN)
        return meta

    reader.cached_meta = meta_then_flip  # type: ignore[method-assign]
    img = client.qdrant.scroll(GREEN, limit=1)[0][0].payload["image_path"]
    q = Embedder(client.registry.get_model("omni-indep@2")).embed([img])[0]
    hits = reader.query("live", "omni-indep@2", q, limit=3)
    assert len(hits) == 3 and hits[0].payload["image_path"] == img


def _cmd(tmp, *args):
    return [sys.executable, "-m", "qdrant_compat.cli.main", "--path", str(tmp / "store"), "--registry", str(tmp / "reg"),
            "--no-progress", *args]


def test_sigkill_mid_fill_then_resume(legacy):
    tmp, client = legacy
    client.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = np.random.default_rng(1)
    kills, left = 0, []
    for _trial in range(2):
        proc = subprocess.Popen(_cmd(tmp, "-v", "upgrade", "run", "live", "--to", "omni-indep@2", "--strategy", "backfill",
                                     "--layout", "blue_green", "--batch-size", "8", "--lock-ttl", "300"),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wanted, seen = int(rng.integers(1, 5)), 0
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += "points written" in line
            if seen >= wanted:
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")  # what the dead run left
        left.append((c.get_meta("legacy").job.phase.value, c.count_with_vector(GREEN, "omni-indep@2")))
        c.close()
    done = subprocess.run(_cmd(tmp, "--json", "upgrade", "run", "live"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert kills == 2, left  # both runs really died mid-fill
    assert all(phase == "running" and 0 < filled < 150 for phase, filled in left), left
    assert left[0][1] <= left[1][1]  # the second resumed what the first left
    assert 150 - left[-1][1] <= json.loads(done.stdout)["processed"] <= 150 - left[-1][1] + 8  # only what was left
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    try:
        res = check_fill(c, GREEN, "omni-indep@2", reference=_reference(c))
        assert res["ok"] and res["points"] == 150, res
        assert c.store.count("legacy") == 150 and c.store.resolve("live") == "legacy"
    finally:
        c.close()


def test_rollback_after_a_post_cutover_write_when_the_new_model_can_write_the_old_vector(legacy, omni_train):
    """With a new->old adapter green mirrors back into blue, so a point written after the cutover is in blue too
    and rollback loses nothing. (The check used to run while blue was 'cutting_over', where every write is refused,
    so it always concluded "cannot" and rollback was refused after the first write.)"""
    tmp, client = legacy
    fit_and_register(client.registry, "omni-indep@2", "omni@1", "linear", direction="new_to_old", images=omni_train,
                     conv_id="n2o")
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    res = cutover(client, "live", grace=0.1)
    assert res.source_kept_in_sync
    img = str(next((tmp / "gallery").rglob("*.png")))
    vec = Embedder(client.registry.get_model("omni-indep@2")).embed([img])
    client.upsert("live", "omni-indep@2", vec, ids=[999_999], payloads=[{"image_path": img}])
    rollback(client, "live", grace=0.1)
    assert client.store.resolve("live") == "legacy"
    got = client.qdrant.retrieve("legacy", [999_999], with_vectors=True)
    assert len(got) == 1 and got[0].payload["image_path"] == img


def test_cutover_refuses_an_alias_re_pointed_by_hand(legacy):
    """Compare-and-switch: an operator pointed the alias elsewhere; cutover must not overwrite that."""
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    client.qdrant.create_collection("elsewhere", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.store.point_alias("live", "elsewhere")
    with pytest.raises(UpgradeError, match="alias 'live' points at 'elsewhere', not at 'legacy'"):
        cutover(client, "legacy", grace=0)
    assert client.store.aliases()["live"] == "elsewhere"  # untouched
    client.store.point_alias("live", "legacy")
    assert cutover(client, "legacy", grace=0).alias == "live" and client.store.resolve("live") == GREEN


def test_into_an_existing_collection_is_refused_before_anything_is_recorded(legacy):
    tmp, client = legacy
    client.qdrant.create_collection("taken", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with pytest.raises(UpgradeError, match="'taken' already exists"):
        run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green", into="taken")
    assert client.get_meta("legacy").job is None  # no planned job left behind to wedge later commands
    rep = run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    assert rep.remaining == 0


def test_blue_green_cleanup_refuses_while_blue_holds_points_green_lacks(legacy):
    """A point upserted into the old collection by name with plain qdrant-client after the cutover: dropping blue
    would keep it only in the backup file. Cleanup refuses; rollback, run, cutover bring it over."""
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    cutover(client, "live", grace=0)
    src = client.qdrant.scroll("legacy", limit=1, with_vectors=True, with_payload=True)[0][0]
    client.qdrant.upsert("legacy", points=[models.PointStruct(id=777_777, vector=src.vector, payload=src.payload)],
                         wait=True)
    with pytest.raises(UpgradeError, match="cleanup refused: 1 point\\(s\\) of 'legacy' are not in"):
        cleanup(client, "live", yes=True)
    assert client.qdrant.collection_exists("legacy")
    rollback(client, "live", grace=0)
    run_upgrade(client, "live")
    cutover(client, "live", grace=0)
    cleanup(client, "live", yes=True)
    assert len(client.qdrant.retrieve(GREEN, [777_777])) == 1


def test_writes_of_the_new_model_pass_during_the_blue_green_cutover_window(legacy):
    """Through the alias, during a blue-green cutover's grace-and-compare window, every write was refused, the new
    model's too (#20, finding 3): a write by the model being cut over to now waits for the switch and lands in
    the new collection; an old-model write is still refused (it cannot fill the new vector)."""
    from qdrant_compat.errors import IncompatibleModelError

    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    writer = CompatClient(client.qdrant, registry=client.registry, meta_ttl=0)
    img = str(sorted((tmp / "gallery").rglob("*.png"))[0])
    new_v = Embedder(client.registry.get_model("omni-indep@2")).embed([img])
    old_v = Embedder(client.registry.get_model("omni@1")).embed([img])
    results: dict[str, object] = {}

    def write_in_window() -> None:
        while client.get_meta("legacy").job.phase != Phase.CUTTING_OVER:
            time.sleep(0.01)
        t0 = time.monotonic()
        try:
            writer.upsert("live", "omni@1", old_v, ids=[20_001], payloads=[{"image_path": img}])
            results["old"] = "written"
        except IncompatibleModelError as exc:
            results["old"] = str(exc)
        writer.upsert("live", "omni-indep@2", new_v, ids=[20_002], payloads=[{"image_path": img}])
        results["new_waited"] = time.monotonic() - t0

    t = threading.Thread(target=write_in_window)
    t.start()
    out = cutover(client, "live", grace=0.6)
    t.join(timeout=60)
    assert out.alias == "live" and client.store.resolve("live") == GREEN
    assert "is cutting over to" in str(results["old"])
    assert 0 < results["new_waited"] < 30
    got = client.qdrant.retrieve(GREEN, [20_002], with_vectors=True)
    assert got and np.allclose(np.asarray(got[0].vector["omni-indep@2"]), new_v[0] / np.linalg.norm(new_v[0]), atol=1e-5)
    assert not client.qdrant.retrieve("legacy", [20_002]) and not client.qdrant.retrieve(GREEN, [20_001])


_KILLED_CUTOVER = """
import os, sys
from qdrant_compat import CompatClient
from qdrant_compat.upgrade import cutover, inplace
inplace.time.sleep = lambda s: os._exit(137)  # dies in the grace period, as a SIGKILL would: no handler runs
c = CompatClient(path=sys.argv[1], registry=sys.argv[2])
cutover(c, "live", grace=5)
"""


@pytest.mark.parametrize("then", ["rollback", "cutover"])
def test_a_cutover_killed_in_its_grace_period_says_what_is_half_done_and_is_finished_or_undone(legacy, then):
    """SIGKILL in a blue-green cutover left blue 'cutting_over', every write through the alias refused, and
    'rollback' answered "nothing to roll back" (#20, finding 3). Status now says what is half-done; rollback undoes
    it (old-model writes accepted again, the alias untouched), cutover finishes it."""
    from click.testing import CliRunner

    from qdrant_compat.cli.main import cli

    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    client.close()
    res = subprocess.run([sys.executable, "-c", _KILLED_CUTOVER, str(tmp / "store"), str(tmp / "reg")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 137, res.stderr[-2000:]
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg", meta_ttl=0)
    try:
        assert c.get_meta("legacy").job.phase == Phase.CUTTING_OVER and c.store.resolve("live") == "legacy"
        img = str(sorted((tmp / "gallery").rglob("*.png"))[0])
        old_v = Embedder(c.registry.get_model("omni@1")).embed([img])
        with pytest.raises(Exception, match="is cutting over to"):
            c.upsert("live", "omni@1", old_v, ids=[30_001], payloads=[{"image_path": img}])
    finally:
        c.close()
    base = ["--path", str(tmp / "store"), "--registry", str(tmp / "reg"), "--no-progress"]
    st = CliRunner().invoke(cli, [*base, "upgrade", "status", "live"], catch_exceptions=False)
    assert "a cutover is running or was interrupted" in st.output and "'upgrade rollback live' undoes it" in st.output
    done = CliRunner().invoke(cli, [*base, "upgrade", then, "live", "--grace", "0"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg", meta_ttl=0)
    try:
        if then == "rollback":
            assert c.store.resolve("live") == "legacy" and c.get_meta("legacy").job.phase == Phase.FILLED
            c.upsert("live", "omni@1", old_v, ids=[30_001], payloads=[{"image_path": img}])  # accepted again
            assert c.qdrant.retrieve(GREEN, [30_001])  # and still mirrored into green
            assert run_upgrade(c, "live").processed == 1  # the new point gets its new vector
            assert cutover(c, "live", grace=0).alias == "live"  # and the cutover can be made again
        assert c.store.resolve("live") == GREEN and c.get_meta("legacy").job.phase == Phase.CUT_OVER
    finally:
        c.close()
