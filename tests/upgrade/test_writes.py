"""The batch write every engine shares, and the lock a worker keeps while it writes on its own."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qdrant_compat.client import PROVENANCE_KEY
from qdrant_compat.errors import JobLockedError
from qdrant_compat.upgrade import run_upgrade
from qdrant_compat.upgrade.writes import CHANGED, FillTarget, hold_lease, seen_key, write_extracted


def _started(client):
    """A backfill job on 'g' whose first batch ran (the target vector exists); returns (job, pending records)."""
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=4, max_batches=1)
    job = rep.job
    recs = [r for r in client.scroll_all("g") if (r.payload.get(PROVENANCE_KEY) or {}).get("omni_indep_2") is None]
    return job, recs


def test_write_extracted_skips_changed_and_deleted_points_and_fails_bad_vectors(world):
    tmp, client = world
    job, recs = _started(client)
    a, b, c, d, e = recs[:5]
    seen = {r.id: seen_key(r.payload, "image_path") for r in (a, b, c, d, e)}
    client.upsert("g", "omni@1", [np.ones(32, np.float32)], ids=[b.id], payloads=[{"image_path": "new.png"}])
    client.delete("g", [c.id])
    t = FillTarget("g", job.target, job.target_model, "image_path")
    vecs = np.stack([np.full(32, 0.5, np.float32), np.ones(32, np.float32), np.ones(32, np.float32),
                     np.full(32, np.nan, np.float32)])
    res = write_extracted(client.store, t, seen, [a.id, b.id, c.id, d.id], vecs, [], [e.id])
    assert sorted(res.changed, key=str) == sorted([b.id, c.id], key=str)
    assert res.marks["extracted"] == [a.id] and res.marks["missing"] == []
    assert set(res.marks["failed"]) == {d.id, e.id}
    assert "non-finite" in res.errors[d.id]
    got = {r.id: r for r in client.store.retrieve("g", [a.id, b.id, d.id, e.id], with_vectors=True,
                                                  with_payload=True)}
    assert np.allclose(got[a.id].vector[job.target], np.full(32, 0.5) / np.linalg.norm(np.full(32, 0.5)), atol=1e-5)
    assert got[a.id].payload[PROVENANCE_KEY]["omni_indep_2"] == "extracted"
    assert job.target not in (got[b.id].vector or {})  # the re-written point keeps its new state, no mark
    assert (got[b.id].payload.get(PROVENANCE_KEY) or {}).get("omni_indep_2") is None
    assert job.target not in (got[d.id].vector or {}) and got[d.id].payload[PROVENANCE_KEY]["omni_indep_2"] == "failed"
    assert got[e.id].payload[PROVENANCE_KEY]["omni_indep_2"] == "failed"
    assert CHANGED not in res.marks


def test_a_worker_writes_only_while_its_run_holds_the_lock_and_extends_it(world):
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=4, max_batches=1, owner="driver-a",
                lock_ttl=60)
    meta = client.get_meta("g")
    with pytest.raises(JobLockedError, match="no longer held by driver-a"):  # the run ended: its lock is released
        hold_lease(client.store, "g", "driver-a", 60)
    from qdrant_compat.upgrade.state import Lock

    now = time.time()
    meta.job.lock = Lock("driver-a", now + 50)
    client.put_meta("g", meta)
    hold_lease(client.store, "g", "driver-a", 60, now=now)  # more than half left: untouched
    assert client.get_meta("g").job.lock.expires_at == pytest.approx(now + 50)
    hold_lease(client.store, "g", "driver-a", 60, now=now + 25)  # 25 s left of 60: extended
    after = client.get_meta("g")
    assert after.job.lock.owner == "driver-a" and after.job.lock.expires_at == pytest.approx(now + 85)
    assert after.job.id == meta.job.id and after.job.counts == meta.job.counts  # nothing else changed
    meta.job.lock = Lock("driver-b", now + 60)  # taken over (the first expired)
    client.put_meta("g", meta)
    with pytest.raises(JobLockedError, match="held by driver-b"):
        hold_lease(client.store, "g", "driver-a", 60, now=now)
