"""Races between writers and the upgrade, and state that used to mislead. Each case failed before its fix."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from qdrant_compat import CompatClient
from qdrant_compat.bridges import fit_and_register
from qdrant_compat.enums import Phase, Strategy
from qdrant_compat.errors import IncompatibleModelError, UpgradeError
from qdrant_compat.evaluation import record_bct_evidence
from qdrant_compat.evaluation.crossmodel import CompatibilityReport
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.upgrade import cutover, plan_upgrade, rollback, run_upgrade, upgrade_status


def _old_vectors(client, n, seed):
    return np.random.default_rng(seed).normal(size=(n, 32)).astype(np.float32)


def test_a_stale_writer_during_cutover_cannot_leave_a_point_behind(world):
    """A writer that read the metadata just before the cutover announced itself writes only the old vector;
    the grace period lets that write land before the final check, which then refuses and reverts."""
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    stale = client.get_meta("g")  # read before the cutover starts, as a slow writer would have
    other = CompatClient(client.qdrant, registry=client.registry)
    other.get_meta = lambda name: stale  # type: ignore[method-assign]
    writer = threading.Thread(target=lambda: (time.sleep(0.3), other.upsert("g", "omni@1", _old_vectors(client, 1, 1),
                                                                               ids=[10_000])))
    writer.start()
    with pytest.raises(UpgradeError, match="1 of 151 points have no 'omni-indep@2' vector"):
        cutover(client, "g", grace=1.0)
    writer.join()
    meta = client.get_meta("g")
    assert meta.read == "omni@1" and meta.job.phase == Phase.FILLED  # nothing switched; the point is findable
    hits = client.query("g", "omni@1", _old_vectors(client, 1, 1)[0], limit=1)
    assert hits[0].id == 10_000


def test_writes_during_cutover_are_refused_or_reach_the_target(world):
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    meta = client.get_meta("g")
    meta.job.phase = Phase.CUTTING_OVER
    client.put_meta("g", meta)
    with pytest.raises(IncompatibleModelError, match="is cutting over to 'omni-indep@2'.*refused rather than lost"):
        client.upsert("g", "omni@1", _old_vectors(client, 1, 2))
    # a cutover killed in this phase is simply run again
    out = cutover(client, "g", grace=0)
    assert out.read == "omni-indep@2" and client.get_meta("g").job.phase == Phase.CUT_OVER


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_writes_interleaved_at_random_points_never_lose_a_point(world, monkeypatch, seed):
    """Property-style: every store call the upgrade and the cutover make is a point where writes may
    interleave. A write reads the metadata at one point and lands at a later one (a slow writer), with
    the old or the new model; the cutover's grace lets in-flight writes land. Whatever the interleaving:
    every point ends findable through the read vector, every accepted write is there, nothing else fails."""
    tmp, client = world
    from qdrant_compat.upgrade import inplace

    # no converter: an old-model write cannot reach the new vector, so the cutover window is real
    images = [str(p.resolve()) for p in sorted((tmp / "gallery").rglob("*.png"))]
    rng = np.random.default_rng(seed)
    inflight: list[tuple[CompatClient, str, int, np.ndarray]] = []
    accepted: dict[int, str] = {}
    refused: list[str] = []
    counter = [0]

    def land(item):
        w, model, pid, v = item
        try:
            w.upsert("g", model, v[None], ids=[pid], payloads=[{"image_path": images[pid % len(images)]}])
            accepted[pid] = model
        except IncompatibleModelError as exc:
            refused.append(str(exc))

    rate = [0.3]

    def maybe_interleave():
        if rng.random() < rate[0]:  # a writer reads the metadata now...
            snapshot = client.get_meta("g")
            w = CompatClient(client.qdrant, registry=client.registry)
            w.get_meta = lambda name, snap=snapshot: snap  # type: ignore[method-assign]
            counter[0] += 1
            inflight.append((w, "omni@1" if rng.random() < 0.7 else "omni-indep@2", 500_000 + counter[0],
                             rng.normal(size=32).astype(np.float32)))
        if inflight and rng.random() < 0.4:  # ...and its write lands some steps later
            land(inflight.pop(int(rng.integers(len(inflight)))))

    store = client.store
    for name in ("count", "scroll", "write_vectors", "set_metadata", "retrieve"):
        real = getattr(store, name)

        def hooked(*a, _real=real, **k):
            if not getattr(hooked, "busy", False):
                hooked.busy = True  # type: ignore[attr-defined]
                try:
                    maybe_interleave()
                finally:
                    hooked.busy = False  # type: ignore[attr-defined]
            return _real(*a, **k)

        monkeypatch.setattr(store, name, hooked)

    def grace(_seconds):  # in-flight writes land during the grace period
        while inflight:
            land(inflight.pop(0))

    monkeypatch.setattr(inplace.time, "sleep", grace)
    for _ in range(20):
        run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=int(rng.integers(16, 64)))
        rate[0] *= 0.6  # writes quieten over time, so the catch-up converges
        try:
            cutover(client, "g")
            break
        except UpgradeError as exc:
            assert "have no 'omni-indep@2' vector" in str(exc)  # caught up by the next run
    else:
        pytest.fail("cutover never succeeded")
    monkeypatch.undo()
    meta = client.get_meta("g")
    assert meta.read == "omni-indep@2"
    total = client.store.count("g")
    assert total == 150 + len(accepted)
    assert client.count_with_vector("g", "omni-indep@2") == total  # no point left without the read vector
    assert all("refused rather than lost" in r or "has no route there" in r for r in refused), refused
    assert counter[0] > 0 and any(m == "omni@1" for m in accepted.values())


def test_backfill_does_not_overwrite_a_point_rewritten_meanwhile(world, monkeypatch):
    tmp, client = world
    from qdrant_compat.engines import local

    paths = sorted((tmp / "gallery").rglob("*.png"))
    victim = client.store.scroll("g", limit=1, with_payload=True)[0][0]
    new_image = str(paths[-1].resolve())
    real = local.decode

    def read_then_reindex(refs, spec, reader):
        out = real(refs, spec, reader)
        if victim.payload["image_path"] in refs:  # the point is re-indexed between the read and the write
            vec = Embedder(client.registry.get_model("omni@1")).embed([new_image])
            client.upsert("g", "omni@1", vec, ids=[victim.id], payloads=[{"image_path": new_image, "class": "x"}])
        return out

    monkeypatch.setattr(local, "decode", read_then_reindex)
    # in line (read_workers=0): the test's own write must not run beside the writer thread
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=32, read_workers=0)
    assert rep.job.counts["changed_during_run"] == 1
    rec = client.store.retrieve("g", [victim.id], with_vectors=True)[0]
    assert "omni-indep@2" not in rec.vector  # not the new model's vector of the *old* image
    monkeypatch.setattr(local, "decode", real)
    run_upgrade(client, "g", batch_size=32)  # the next pass takes the new image
    rec = client.store.retrieve("g", [victim.id], with_vectors=True)[0]
    fresh = Embedder(client.registry.get_model("omni-indep@2")).embed([new_image])[0]
    got = np.asarray(rec.vector["omni-indep@2"])
    assert np.allclose(got / np.linalg.norm(got), fresh / np.linalg.norm(fresh), atol=1e-5)


def test_a_point_deleted_during_backfill_is_skipped_not_a_traceback(world, monkeypatch):
    tmp, client = world
    from qdrant_compat.engines import local

    rec = client.store.scroll("g", limit=1, with_payload=True)[0][0]
    victim = rec.id
    real = local.decode

    def read_then_delete(refs, spec, reader):
        out = real(refs, spec, reader)
        if rec.payload["image_path"] in refs:
            client.qdrant.delete("g", points_selector=[victim], wait=True)
        return out

    monkeypatch.setattr(local, "decode", read_then_delete)
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=32, read_workers=0)
    assert rep.remaining == 0 and client.store.count("g") == 149 and not client.store.retrieve("g", [victim])


def test_counts_are_exact_after_redone_batches(world):
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=40, max_batches=2)
    meta = client.get_meta("g")
    meta.job.counts["extracted"] += 37  # what summing over crashed, redone batches used to do
    client.put_meta("g", meta)
    rep = run_upgrade(client, "g", batch_size=40)
    assert rep.job.counts["extracted"] == 150 and rep.job.counts["unmarked"] == 0


def test_status_calls_unmarked_backfilled_points_unmarked_not_converted(world):
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=50, max_batches=1)
    # a crash between the vector write and its mark: a vector without a mark on a backfill-only job
    rec = client.store.scroll("g", limit=200, with_vectors=["omni-indep@2"])[0]
    missing_mark = next(r for r in rec if "omni-indep@2" not in (r.vector or {}))
    client.store.write_vectors("g", "omni-indep@2", {missing_mark.id: [1.0] * 32})
    st = upgrade_status(client, "g").vectors["omni-indep@2"]
    assert st.converted == 0 and st.unmarked == 1 and st.extracted == 50


def _give_bct_edge(registry, trained):
    """omni-indep@2 gets a bct lineage to omni@1 with passing figures, as 'evaluate --record' would write them."""
    from qdrant_compat.cards import Lineage

    rep = CompatibilityReport(cells={"omni@1/omni@1": {"top1": 50.0}, "omni-indep@2/omni@1": {"top1": 55.0},
                                     "omni-indep@2/omni-indep@2": {"top1": 60.0}})
    card = registry.get_model("omni-indep@2").card
    registry.update_card(card.with_(lineage=Lineage(parent="omni@1", parent_fingerprint=trained[1].fingerprint, relation="bct")))
    record_bct_evidence(registry, "omni-indep@2", rep)


def test_adopt_then_backfill_starts_a_backfill(world, trained):
    tmp, client = world
    _give_bct_edge(client.registry, trained)
    out = run_upgrade(client, "g", "omni-indep@2")
    assert out.job.strategy == Strategy.ADOPT
    assert client.query("g", "omni-indep@2", _old_vectors(client, 1, 4)[0], limit=1)  # served through the edge
    with pytest.raises(UpgradeError, match="run 'upgrade run --to omni-indep@2 --strategy backfill'"):
        cutover(client, "g")
    back = run_upgrade(client, "g", "omni-indep@2", strategy="backfill")  # used to resume the adopt job, doing nothing
    assert back.job.strategy == Strategy.BACKFILL and back.job.counts["extracted"] == 150
    assert cutover(client, "g", grace=0).read == "omni-indep@2"


def test_rollback_of_an_adopt_stops_the_new_models_queries(world, trained, omni_train):
    tmp, client = world
    _give_bct_edge(client.registry, trained)
    run_upgrade(client, "g", "omni-indep@2")
    q = _old_vectors(client, 1, 5)[0]
    assert client.query("g", "omni-indep@2", q, limit=1)
    rollback(client, "g")
    with pytest.raises(IncompatibleModelError, match=r"was revoked: rolled back \(job"):
        client.query("g", "omni-indep@2", q, limit=1)
    with pytest.raises(IncompatibleModelError):
        client.upsert("g", "omni-indep@2", q)
    # a registered adapter for the same pair is another bridge: the revoked bct edge does not block it
    fit_and_register(client.registry, "omni-indep@2", "omni@1", "linear", direction="new_to_old", images=omni_train,
                     conv_id="ad21")
    assert client.route("g", "omni-indep@2").via == "adapter"


def test_a_run_started_during_the_cutover_grace_period_does_not_resume_the_job(world):
    """'cutting_over' counted as an open phase, so a run started in the grace period resumed the job and its
    heartbeat wrote 'running' over the cutover's phase: the collection ended switched while the job said running
    and cleanup was refused (#18). The run must refuse, and the cutover finish as if it had not been tried."""
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    from qdrant_compat.upgrade import inplace

    seen: list[Exception] = []
    real_sleep = inplace.time.sleep

    def run_meanwhile(s):
        try:
            run_upgrade(CompatClient(client.qdrant, registry=client.registry), "g")
        except UpgradeError as exc:
            seen.append(exc)
        real_sleep(0)

    inplace.time.sleep = run_meanwhile
    try:
        out = cutover(client, "g", grace=0.5)
    finally:
        inplace.time.sleep = real_sleep
    assert len(seen) == 1 and "is cutting over" in str(seen[0]) and "upgrade cutover" in str(seen[0])
    meta = client.get_meta("g")
    assert out.read == "omni-indep@2" and meta.read == "omni-indep@2" and meta.job.phase == Phase.CUT_OVER


def _forged_card(registry, trained, tmp):
    """omni-indep@2's bytes under a new version whose hand-written card claims a passing bct edge to omni@1."""
    from qdrant_compat.cards import Lineage

    m = registry.get_model("omni-indep@2")
    ev = {"criterion_met": True, "cross_top1": 99.0, "old_top1": 1.0, "signature": "0" * 64}
    card = m.card.with_(version="9", fingerprint="", seal="", lineage=Lineage(
        parent="omni@1", parent_fingerprint=trained[1].fingerprint, relation="bct", evidence=ev))
    return m.onnx_path, card


@pytest.mark.parametrize("trust", [False, True])
def test_forged_lineage_is_shown_but_never_acted_on_without_trust(world, trained, tmp_path, trust):
    """A hand-written card claiming criterion_met was registered, 'plan' adopted it and queries were routed (#20,
    finding 7). Seals prove integrity, not origin: only evidence this registry measured, or was explicitly told to
    trust, is acted on."""
    tmp, client = world
    onnx, card = _forged_card(client.registry, trained, tmp_path)
    reg = client.registry.register_model(onnx, card, trust_evidence=trust)
    assert reg.lineage.evidence["cross_top1"] == 99.0  # kept and shown either way
    assert client.registry.vouches_for(client.registry.get_model("omni-indep@9").card) is trust
    p = plan_upgrade(client, "g", "omni-indep@9")
    q = _old_vectors(client, 1, 6)[0]
    if trust:
        assert p.strategy == Strategy.ADOPT
        assert client.query("g", "omni-indep@9", q, limit=1)
        return
    assert p.strategy == Strategy.BACKFILL
    assert any("claims compatibility evidence (criterion_met: True) that this registry did not measure" in r
               for r in p.reasons)
    with pytest.raises(IncompatibleModelError, match="cannot search them"):
        client.query("g", "omni-indep@9", q, limit=1)
    with pytest.raises(UpgradeError, match="strategy adopt needs a measured bct edge"):
        run_upgrade(client, "g", "omni-indep@9", strategy="adopt")


def test_evidence_signed_by_another_registry_or_edited_is_not_trusted(world, trained, tmp_path):
    """A card carrying a real signature from another registry, or this registry's signed evidence with a figure
    changed and the seal recomputed, does not verify here."""
    import shutil

    from qdrant_compat import Registry

    tmp, client = world
    _give_bct_edge(client.registry, trained)
    signed = client.registry.get_model("omni-indep@2").card
    assert client.registry.vouches_for(signed)
    other = Registry(tmp_path / "other")
    shutil.copytree(client.registry.root / "models", other.root / "models")  # the cards, not the key
    assert not other.vouches_for(other.get_model("omni-indep@2").card)
    edited = signed.with_(lineage=dataclasses.replace(signed.lineage, evidence={**signed.lineage.evidence, "old_top1": 0.5}))
    client.registry.update_card(edited)  # re-sealed: the seal is fine, the signature is not
    assert not client.registry.vouches_for(client.registry.get_model("omni-indep@2").card)
    assert plan_upgrade(client, "g", "omni-indep@2").strategy == Strategy.BACKFILL


def test_a_second_cutover_during_the_first_ones_grace_period_is_refused(world):
    """Cutover used to check the job lock with a throwaway owner and hold nothing, so two cutovers could run at
    once (#18). It now holds the lock for its grace period: another cutover is refused, and the lock is free after."""
    from qdrant_compat.errors import JobLockedError
    from qdrant_compat.upgrade import inplace

    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    seen: list[Exception] = []
    real_sleep = inplace.time.sleep

    def second_cutover(s):
        inplace.time.sleep = real_sleep
        try:
            cutover(CompatClient(client.qdrant, registry=client.registry), "g", grace=0)
        except JobLockedError as exc:
            seen.append(exc)

    inplace.time.sleep = second_cutover
    try:
        out = cutover(client, "g", grace=0.5)
    finally:
        inplace.time.sleep = real_sleep
    assert len(seen) == 1 and "is being run by" in str(seen[0])
    job = client.get_meta("g").job
    assert out.read == "omni-indep@2" and job.phase == Phase.CUT_OVER and job.lock is None
