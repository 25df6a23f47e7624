"""How often one upgrade run reads and writes the collection's metadata block, counted at the store seam.

The job lives in that block: every read and write is a round trip to the server and every write a chance to
race. Before the job had one owner a run of 150 points in 3 batches read it 10 times and wrote it 6 times in
place, 25 and 12 times blue-green (measured with this test's counter on the parent commit); a heartbeat now
renews the lock when due (every few seconds), not after every batch."""

from __future__ import annotations

import time

import pytest

from qdrant_compat.engines import local
from qdrant_compat.errors import JobLockedError
from qdrant_compat.metadata import Lock
from qdrant_compat.store import Store
from qdrant_compat.upgrade import fill, run_upgrade

BOUNDS = {"in_place": (5, 3), "blue_green": (12, 6)}  # half of what the run cost before, or better


@pytest.fixture()
def counted(monkeypatch):
    calls = {"read": 0, "write": 0}
    real_read, real_write = Store.metadata, Store.set_metadata

    def read(self, name):
        calls["read"] += 1
        return real_read(self, name)

    def write(self, name, key, value):
        calls["write"] += 1
        return real_write(self, name, key, value)

    monkeypatch.setattr(Store, "metadata", read)
    monkeypatch.setattr(Store, "set_metadata", write)
    return calls


def _run(client, layout, batch_size, **kw):
    return run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=batch_size, layout=layout,
                       alias="live" if layout == "blue_green" else None, **kw)


@pytest.mark.parametrize("layout", ["in_place", "blue_green"])
def test_a_run_reads_and_writes_the_block_a_few_times_whatever_its_batch_count(world, counted, layout, monkeypatch):
    tmp, client = world  # 150 points
    monkeypatch.setattr(fill, "HEARTBEAT_S", 1e6)  # both layouts: a slow CI box must not add a due heartbeat to one run
    rep = _run(client, layout, 50, max_batches=1)  # 1 batch of 3, then resumed with 10 batches of 10
    first = dict(counted)
    counted.update(read=0, write=0)
    rep = _run(client, layout, 10)
    assert rep.remaining == 0 and rep.job.counts["extracted"] == 150
    reads, writes = BOUNDS[layout]
    assert first["read"] <= reads and first["write"] <= writes, first
    assert counted["read"] <= reads and counted["write"] <= writes, counted  # 10 batches cost no more than 1


def test_a_due_heartbeat_renews_the_lock_and_stores_the_counts(world, monkeypatch):
    tmp, client = world
    monkeypatch.setattr(fill, "HEARTBEAT_S", 0.0)  # due after every batch
    seen = []
    real = local.decode

    def watching(refs, spec, reader):
        job = client.get_meta("g").job
        seen.append((job.lock.expires_at, dict(job.counts)))
        return real(refs, spec, reader)

    monkeypatch.setattr(local, "decode", watching)
    _run(client, "in_place", 50, read_workers=0)
    assert len(seen) == 3
    assert seen[1][0] > seen[0][0] and seen[2][0] > seen[1][0]  # renewed after each batch
    assert seen[2][1].get("extracted") == 100  # what 'upgrade status' shows during the run


def test_a_run_that_stalled_past_its_lock_stops_when_another_took_it(world, monkeypatch):
    """The heartbeat is due long before the lock expires, so a live run never loses it; one that stalled past
    it (a frozen VM) finds another owner at its next heartbeat and stops without writing the job."""
    tmp, client = world
    calls = [0]
    real = local.decode

    def stall_then_lose_the_lock(refs, spec, reader):
        calls[0] += 1
        if calls[0] == 2:
            time.sleep(0.5)  # longer than the lock's 0.4 s
            meta = client.get_meta("g")
            meta.job.lock = Lock("otherhost:1:bb", time.time() + 600)
            client.put_meta("g", meta)
        return real(refs, spec, reader)

    monkeypatch.setattr(local, "decode", stall_then_lose_the_lock)
    with pytest.raises(JobLockedError, match="taken over by otherhost:1:bb"):
        _run(client, "in_place", 50, read_workers=0, lock_ttl=0.4)
    assert client.get_meta("g").job.lock.owner == "otherhost:1:bb"  # the loser wrote nothing over it
