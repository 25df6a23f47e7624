"""Collection upgrades on an embedded store with real images: plan, run, resume, cutover, rollback, cleanup."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_compat.bridges import fit_and_register
from qdrant_compat.data import ImageFolder
from qdrant_compat.errors import IncompatibleModelError, JobLockedError, UpgradeError
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.upgrade import cleanup, cutover, plan_upgrade, rollback, run_upgrade, upgrade_status

from .conftest import payloads


def _vectors(client, vector):
    return {r.id: np.asarray(r.vector[vector]) for r in client.scroll_all("g", with_vectors=[vector])
            if vector in (r.vector or {})}


def test_plan_backfill_changes_nothing(world):
    tmp, client = world
    before = client.get_meta("g").to_dict()
    plan = plan_upgrade(client, "g", "omni-indep@2")
    assert plan.strategy == "backfill" and plan.points == 150 and plan.images_missing == 0
    assert "re-extracted from the image named in payload field 'image_path'" in plan.reasons[0]
    assert plan.estimated_seconds > 0
    assert client.get_meta("g").to_dict() == before


def test_backfill_takes_the_old_models_least_certain_points_first(world, monkeypatch):
    from qdrant_compat.upgrade import fill as runner

    tmp, client = world
    monkeypatch.setattr(runner, "SCAN_PAGE", 16)  # scored page by page, as a large gallery is
    old = {r.id: np.asarray(r.vector["omni@1"], np.float64) for r in client.scroll_all("g", with_vectors=["omni@1"])}
    w = np.asarray(client.registry.get_model("omni@1").classifier_weight(), np.float64)
    cos = lambda v: (w @ v) / (np.linalg.norm(w, axis=1) * np.linalg.norm(v))  # noqa: E731
    doubt = {pid: 1 - cos(v).max() for pid, v in old.items()}
    rep = run_upgrade(client, "g", "omni-indep@2", batch_size=20, max_batches=1)  # uncertainty: the default
    done = set(_vectors(client, "omni-indep@2"))
    assert rep.processed == 20 and len(done) == 20
    ranked = sorted(doubt, key=doubt.get, reverse=True)
    assert min(doubt[p] for p in done) >= doubt[ranked[19]] - 1e-6  # exactly the 20 most doubtful points
    assert max(doubt[p] for p in set(old) - done) <= min(doubt[p] for p in done) + 1e-6


def test_backfill_interrupted_then_resumed_exactly_once(world):
    tmp, client = world
    before = payloads(client)
    rep = run_upgrade(client, "g", "omni-indep@2", batch_size=40, max_batches=2, priority="random")
    assert rep.stopped_early and rep.processed == 80 and rep.remaining == 70
    # queries with the old model keep working mid-upgrade
    old_q = Embedder(client.registry.get_model("omni@1")).embed([str(next((tmp / "gallery").rglob("*.png")))])
    assert len(client.query("g", "omni@1", old_q, limit=5)) == 5
    # the new model has no route to the unfilled points: refused with a clear reason, never partial results
    with pytest.raises(IncompatibleModelError, match="is still being filled and no compatible route"):
        client.query("g", "omni-indep@2", np.ones(32))
    rep2 = run_upgrade(client, "g", batch_size=40)  # resume without naming the target
    assert rep2.remaining == 0 and rep2.job.phase == "filled" and rep2.job.counts["extracted"] == 150
    got = _vectors(client, "omni-indep@2")
    folder = ImageFolder(tmp / "gallery")
    expected = Embedder(client.registry.get_model("omni-indep@2")).embed([str(p) for p in folder.paths])
    from qdrant_compat.indexing import point_id_for

    for p, e in zip(folder.paths, expected, strict=True):
        v = got[point_id_for(p)]
        assert np.allclose(v / np.linalg.norm(v), e / np.linalg.norm(e), atol=1e-5)
    assert payloads(client) == before
    st = upgrade_status(client, "g")
    assert st.vectors["omni-indep@2"].extracted == 150 and st.vectors["omni-indep@2"].points == 150


def test_missing_images_are_reported_not_dropped_and_block_cutover(world):
    tmp, client = world
    victim = sorted((tmp / "gallery").rglob("*.png"))[3]
    victim.unlink()
    plan = plan_upgrade(client, "g", "omni-indep@2")
    assert plan.images_missing == 1
    rep = run_upgrade(client, "g", "omni-indep@2", batch_size=64)
    assert rep.job.counts["missing"] == 1 and rep.remaining == 1
    assert any(str(victim) in e for e in rep.job.errors)
    assert client.qdrant.count("g").count == 150
    with pytest.raises(UpgradeError, match="1 of 150 points have no 'omni-indep@2' vector yet and would become unfindable"):
        cutover(client, "g", allow_partial=True)


def test_lock_refuses_a_second_runner_until_it_expires(world):
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", batch_size=40, max_batches=1, owner="otherhost:1:aa", lock_ttl=600)
    # a stopped run releases its lock; take it again as a live holder on another host
    from qdrant_compat.upgrade.fill import _Session

    sess = _Session(client, "g", "otherhost:1:aa", 600)
    meta, job = sess.load()
    sess.save(meta, job)
    with pytest.raises(JobLockedError, match=r"is being run by otherhost:1:aa \(lock held for"):
        run_upgrade(client, "g", batch_size=40)
    sess.ttl = -1  # expired
    meta, job = sess.load()
    sess.save(meta, job)
    assert run_upgrade(client, "g", batch_size=40).remaining == 0


def test_convert_then_cutover_rollback_cleanup(world, omni_train):
    tmp, client = world
    card = fit_and_register(client.registry, "omni@1", "omni-indep@2", "linear", images=omni_train)
    assert card.fit["holdout"]["top1_retention"] > 0
    plan = plan_upgrade(client, "g", "omni-indep@2")
    assert plan.strategy == "convert+backfill" and plan.converter == card.id
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="convert", batch_size=50)
    assert rep.remaining == 0 and rep.job.counts["converted"] == 150
    st = upgrade_status(client, "g").vectors["omni-indep@2"]
    assert st.converted == 150 and st.extracted == 0
    # converted vectors are the converter's output of the stored vectors
    from converters import load_converter

    conv = load_converter(client.registry.get_converter(card.id).head_dir)
    old, new = _vectors(client, "omni@1"), _vectors(client, "omni-indep@2")
    ids = sorted(old)[:10]
    assert np.allclose(conv.transform(np.stack([old[i] for i in ids])), np.stack([new[i] for i in ids]), atol=1e-4)
    out = cutover(client, "g")
    assert out.target == "omni-indep@2" and out.read == "omni-indep@2"
    meta = client.get_meta("g")
    assert meta.read == "omni-indep@2" and meta.vectors["omni-indep@2"].state == "active"
    q = Embedder(client.registry.get_model("omni-indep@2")).embed([str(next((tmp / "gallery").rglob("*.png")))])
    assert len(client.query("g", "omni-indep@2", q, limit=3)) == 3
    rb = rollback(client, "g")
    assert rb.read == "omni@1" and client.get_meta("g").read == "omni@1"
    # after a rollback, cutover again is cheap: the vectors are still there
    run_upgrade(client, "g", "omni-indep@2", strategy="convert")
    cutover(client, "g")
    with pytest.raises(UpgradeError, match="pass --yes"):
        cleanup(client, "g")
    client.close()
    from qdrant_compat import CompatClient

    c2 = CompatClient(path=str(tmp / "store"), registry=client.registry)
    out = cleanup(c2, "g", yes=True, backup_dir=tmp / "backup")
    assert (tmp / "backup").is_dir() and out.drops == "omni@1" and out.backup.startswith(str(tmp / "backup"))
    assert "omni@1" not in c2.get_meta("g").vectors
    with pytest.raises(UpgradeError, match="was dropped by cleanup"):
        rollback(c2, "g")
    c2.close()


def test_partial_fill_queries_reach_every_point_through_an_adapter(world, omni_train):
    tmp, client = world
    fit_and_register(client.registry, "omni-indep@2", "omni@1", "linear", direction="new_to_old", images=omni_train)
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=50, max_batches=1)
    assert client.count_with_vector("g", "omni-indep@2") == 50
    folder = ImageFolder(tmp / "gallery")
    q = Embedder(client.registry.get_model("omni-indep@2")).embed([str(p) for p in folder.paths])
    seen = set()
    for v in q:
        for h in client.query("g", "omni-indep@2", v, limit=150):
            seen.add(h.id)
    assert len(seen) == 150  # filled and unfilled points are all reachable mid-upgrade
    # a write with the old model mid-upgrade lands in both spaces (through the old->new route if any) or is
    # caught up by the next run: nothing is lost
    client.upsert("g", "omni@1", np.random.default_rng(0).normal(size=(1, 32)), ids=[10**6],
                  payloads=[{"image_path": str(folder.paths[0]), "class": "x"}])
    rep = run_upgrade(client, "g", batch_size=64)
    assert rep.remaining == 0 and client.count_with_vector("g", "omni-indep@2") == 151


def test_dry_runs_change_nothing(world):
    tmp, client = world
    before = client.get_meta("g").to_dict()
    rep = run_upgrade(client, "g", "omni-indep@2", dry_run=True)
    assert rep.dry_run and rep.plan["strategy"] == "backfill" and rep.remaining == 150
    assert client.get_meta("g").to_dict() == before
    assert "omni-indep@2" not in client.store.vector_params("g")


def test_queries_between_batches_never_error(world):
    """Queries interleaved with every batch of a running upgrade (old model, and new model via an adapter)."""
    tmp, client = world
    from qdrant_compat.bridges import fit_and_register as fit

    fit(client.registry, "omni-indep@2", "omni@1", "procrustes", direction="new_to_old",
        src=np.random.default_rng(0).normal(size=(200, 32)), dst=np.random.default_rng(1).normal(size=(200, 32)))
    old_q = np.random.default_rng(2).normal(size=(3, 32))
    answered = []

    def between_batches(done, total):
        for v in old_q:
            answered.append(len(client.query("g", "omni@1", v, limit=10)))
            answered.append(len(client.query("g", "omni-indep@2", v, limit=10)))

    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=30, progress=between_batches)
    assert len(answered) == 5 * 6 and set(answered) == {10}


def test_old_server_is_detected_not_guessed(world):
    tmp, client = world
    from qdrant_compat.store import Store
    from qdrant_compat.upgrade import fill as runner

    class FakeServer:
        """Public surface only: a server client's init_options and info()."""

        init_options = {"url": "http://127.0.0.1:6333", "location": None, "path": None, "host": None, "api_key": "k"}

        def info(self):
            from qdrant_client.http.models import VersionInfo

            return VersionInfo(title="qdrant", version="1.15.2")

    fake = Store(FakeServer())
    caps = fake.capabilities()
    assert not caps.embedded and caps.version == "1.15.2" and not caps.named_vector_changes
    assert "k" not in fake.describe()  # the API key never shows up in a message
    real = client.store
    client.store = fake
    try:
        with pytest.raises(UpgradeError, match=r"server is 1.15.2; adding the new model's vector in place needs >= 1.18"):
            runner.check_server_supports_named_vectors(client)
    finally:
        client.store = real
    assert client.store.capabilities().embedded
    runner.check_server_supports_named_vectors(client)  # embedded: fine


def test_cleanup_counts_and_compares_before_it_drops(world):
    """A point upserted with plain qdrant-client after the cutover holds only the old vector: cleanup must refuse
    (it used to drop the old vector and leave the point with none), and the way it names must fill the point."""
    from qdrant_client import models as qm

    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=64)
    cutover(client, "g", grace=0)
    img = str(sorted((tmp / "gallery").rglob("*.png"))[3])
    old_vec = Embedder(client.registry.get_model("omni@1")).embed([img])[0]
    client.qdrant.upsert("g", points=[qm.PointStruct(id=424242, vector={"omni@1": old_vec.tolist()},
                                                      payload={"image_path": img})], wait=True)
    with pytest.raises(UpgradeError, match="cleanup refused: 1 point\\(s\\) of 'g' hold 'omni@1' but not 'omni-indep@2'"):
        cleanup(client, "g", yes=True)
    assert "omni@1" in client.store.vector_params("g")  # nothing dropped
    rollback(client, "g")
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=64)
    assert rep.processed == 1  # only the point written around the tool
    cutover(client, "g", grace=0)
    cleanup(client, "g", yes=True)
    got = client.qdrant.retrieve("g", [424242], with_vectors=True)[0]
    assert "omni-indep@2" in got.vector  # the point survived with the new model's vector


@pytest.mark.parametrize("strategy", ["backfill", "convert"])
def test_a_run_after_the_cutover_fills_points_written_around_the_tool(world, omni_train, strategy):
    """A stale or raw writer after an in-place cutover leaves points with only the old vector, unfindable by the
    new model; 'upgrade run' used to answer "no upgrade job to resume" and '--to' "already serves" (#20, finding 2).
    The run fills exactly those points, with what the strategy writes, and the job stays cut over."""
    from qdrant_client import models as qm

    from qdrant_compat.enums import Phase

    tmp, client = world
    if strategy == "convert":
        fit_and_register(client.registry, "omni@1", "omni-indep@2", "linear", images=omni_train)
    run_upgrade(client, "g", "omni-indep@2", strategy=strategy, batch_size=64)
    cutover(client, "g", grace=0)
    imgs = [str(p) for p in sorted((tmp / "gallery").rglob("*.png"))[:3]]
    old_vecs = Embedder(client.registry.get_model("omni@1")).embed(imgs)
    existing = next(iter(client.scroll_all("g"))).id  # a raw upsert of an existing point replaces all its vectors
    ids = [777001, 777002, existing]
    client.qdrant.upsert("g", points=[qm.PointStruct(id=i, vector={"omni@1": v.tolist()}, payload={"image_path": p})
                                      for i, v, p in zip(ids, old_vecs, imgs, strict=True)], wait=True)
    assert upgrade_status(client, "g").lacking_target == 3
    rep = run_upgrade(client, "g")  # plain resume
    assert rep.processed == 3 and rep.remaining == 0 and "already cut over" in rep.notes[-1]
    meta = client.get_meta("g")
    assert meta.job.phase == Phase.CUT_OVER and meta.read == "omni-indep@2"
    got = {r.id: np.asarray(r.vector["omni-indep@2"]) for r in client.qdrant.retrieve("g", ids, with_vectors=True)}
    if strategy == "backfill":
        want = Embedder(client.registry.get_model("omni-indep@2")).embed(imgs)
    else:
        conv = client.registry.find_converters(client.registry.get_model("omni@1").card,
                                               client.registry.get_model("omni-indep@2").card)[0]
        want = client.converters.apply(conv.id, old_vecs)
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    for i, w in zip(ids, want, strict=True):
        assert np.allclose(got[i] / np.linalg.norm(got[i]), w, atol=1e-5), i
    assert run_upgrade(client, "g", "omni-indep@2").processed == 0  # with --to: the same, nothing left
    cleanup(client, "g", yes=True)  # now nothing blocks the drop
    assert all("omni-indep@2" in r.vector for r in client.qdrant.retrieve("g", ids, with_vectors=True))


def test_ctrl_c_in_the_cutover_grace_period_leaves_nothing_half_done(world, monkeypatch):
    """Interrupted while waiting out the grace period, the cutover returns the job to its previous phase: old-model
    writes are accepted again (they were refused while it stayed 'cutting_over')."""
    from qdrant_compat.enums import Phase
    from qdrant_compat.upgrade import inplace

    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=64)

    def interrupted(_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(inplace.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cutover(client, "g", grace=5)
    monkeypatch.undo()
    meta = client.get_meta("g")
    assert meta.job.phase == Phase.FILLED and meta.read == "omni@1"
    img = str(sorted((tmp / "gallery").rglob("*.png"))[0])
    client.upsert("g", "omni@1", Embedder(client.registry.get_model("omni@1")).embed([img]), ids=[515151],
                  payloads=[{"image_path": img}])
