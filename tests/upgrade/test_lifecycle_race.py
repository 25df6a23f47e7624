"""A lifecycle command (cutover, rollback, cleanup) racing an ``upgrade run`` on the same collection, at random
moments and in random order (seeded): each either does its whole step or is refused with one clear error, and
whatever the interleaving the collection never loses a point, never serves a half-filled vector as complete, never
stays stuck in 'cutting_over', and the upgrade can always be finished afterwards."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from qdrant_compat import CompatClient
from qdrant_compat.enums import Phase
from qdrant_compat.errors import JobLockedError, UpgradeError
from qdrant_compat.upgrade import cleanup, cutover, rollback, run_upgrade
from qdrant_compat.upgrade.verify import payload_snapshot

COMMANDS = {
    "cutover": lambda c: cutover(c, "g", grace=0.1),
    "rollback": lambda c: rollback(c, "g", grace=0.1),
    "cleanup": lambda c: cleanup(c, "g", yes=True),
}
REFUSED = (UpgradeError, JobLockedError)  # a refusal, with its reason; anything else fails the test


def _check_consistent(client: CompatClient, before: dict) -> None:
    meta = client.get_meta("g")
    assert payload_snapshot(client, "g") == before  # no point lost, no payload changed
    job = meta.job
    assert job is None or job.phase != Phase.CUTTING_OVER, job  # nothing left half-switched
    read_entry = meta.vectors[meta.read]
    assert client.count_with_vector("g", meta.read) == len(before), (meta.read, read_entry)  # reads see every point
    if job is not None and job.phase in (Phase.CUT_OVER, Phase.CLEANED):
        assert meta.read == "omni-indep@2"
    elif job is not None:
        assert meta.read == "omni@1", job.phase


@pytest.mark.parametrize("seed", range(6))
def test_a_lifecycle_command_racing_a_run(world, seed):
    tmp, client = world
    rng = np.random.default_rng(seed)
    command = list(COMMANDS)[seed % 3]
    run_first = seed < 3  # seeds 0-2: the run starts first; 3-5: the command does, and a rerun races it
    delay = float(rng.uniform(0.0, 1.2))
    if not run_first:  # the command needs a job to act on: the vector filled, then the command and a rerun race
        run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=50)
    before = payload_snapshot(client, "g")
    outcomes: dict[str, str] = {}

    def run() -> None:
        try:
            run_upgrade(CompatClient(client.qdrant, registry=client.registry, meta_ttl=0), "g", "omni-indep@2",
                        strategy="backfill", batch_size=10)
            outcomes["run"] = "done"
        except REFUSED as exc:
            outcomes["run"] = f"refused: {exc}"

    def lifecycle() -> None:
        try:
            COMMANDS[command](CompatClient(client.qdrant, registry=client.registry, meta_ttl=0))
            outcomes[command] = "done"
        except REFUSED as exc:
            outcomes[command] = f"refused: {exc}"

    first, second = (run, lifecycle) if run_first else (lifecycle, run)
    t = threading.Thread(target=first)
    t.start()
    time.sleep(delay)
    second()
    t.join(timeout=300)
    assert not t.is_alive()
    assert set(outcomes) == {"run", command}, outcomes  # both ended, each done or refused with its reason
    for what, out in outcomes.items():
        assert out == "done" or len(out) > len("refused: ") + 20, (what, out)
    _check_consistent(client, before)
    # whatever happened, the upgrade can be finished: run (or nothing left to run), cut over, clean up
    meta = client.get_meta("g")
    if meta.job is None or meta.job.phase not in (Phase.CUT_OVER, Phase.CLEANED):
        run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=50)
        cutover(client, "g", grace=0.1)
    if client.get_meta("g").job.phase != Phase.CLEANED:
        cleanup(client, "g", yes=True)
    _check_consistent(client, before)
    final = client.get_meta("g")
    assert final.read == "omni-indep@2" and final.job.phase == Phase.CLEANED and "omni@1" not in final.vectors


@pytest.mark.parametrize("step", ["rollback", "cleanup"])
def test_rollback_and_cleanup_hold_the_job_lock_while_they_work(world, step, monkeypatch):
    """They took only a look at the lock, so a run could start between their read and their write; now each takes
    it (written, read back) for the step, a run meanwhile is refused, and it is let go at the end. (Once cleanup
    has journaled its backup a run is refused anyway: the job is no longer one a run may catch up.)"""
    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=50)
    if step == "cleanup":
        cutover(client, "g", grace=0.1)
    seen: list[BaseException] = []
    from qdrant_compat.store import Store

    where = "count"  # both count the points after taking the lock, before they change anything
    real = getattr(Store, where)

    def meanwhile(self, *a, **kw):
        if not seen:
            try:
                run_upgrade(CompatClient(client.qdrant, registry=client.registry, meta_ttl=0), "g", "omni-indep@2",
                            strategy="backfill")
                seen.append(AssertionError("the run was let in"))
            except JobLockedError as exc:
                seen.append(exc)
        return real(self, *a, **kw)

    monkeypatch.setattr(Store, where, meanwhile)
    COMMANDS[step](CompatClient(client.qdrant, registry=client.registry, meta_ttl=0))
    assert len(seen) == 1 and isinstance(seen[0], JobLockedError), seen
    job = client.get_meta("g").job
    assert job.lock is None and job.phase == (Phase.ROLLED_BACK if step == "rollback" else Phase.CLEANED)


@pytest.mark.parametrize("step,where,racer", [("rollback", "point_alias", "run"), ("cleanup", "backup", "rollback"),
                                               ("cleanup", "delete", "rollback")])
def test_blue_green_rollback_and_cleanup_hold_the_job_lock_while_they_work(legacy, step, where, racer, monkeypatch):
    """The same rule blue-green. A run started as a rollback switches the alias back was let in (blue already said
    'rolled back'), and a rollback started while cleanup backed up or dropped the old collection pointed the alias
    at the collection being dropped. Now each step holds the job: the racer is refused with its reason and the step
    ends as it would alone, its lock let go."""
    tmp, client = legacy
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    cutover(client, "live", grace=0)
    seen: list[BaseException] = []
    from qdrant_compat.store import Store

    real = getattr(Store, where)
    other = CompatClient(client.qdrant, registry=client.registry, meta_ttl=0)
    races = {"run": lambda: run_upgrade(other, "live", "omni-indep@2", strategy="backfill"),
             "rollback": lambda: rollback(other, "live", grace=0)}

    def meanwhile(self, *a, **kw):
        if not seen:
            seen.append(AssertionError(f"the {racer} was let in"))  # first: the racer's own calls come back here
            try:
                races[racer]()
            except REFUSED as exc:
                seen[0] = exc
        return real(self, *a, **kw)

    monkeypatch.setattr(Store, where, meanwhile)
    worker = CompatClient(client.qdrant, registry=client.registry, meta_ttl=0)
    if step == "rollback":
        rollback(worker, "live", grace=0)
    else:
        cleanup(worker, "live", yes=True, backup_dir=tmp / "backups")
    monkeypatch.undo()
    assert len(seen) == 1 and isinstance(seen[0], JobLockedError), seen
    green = "legacy--omni-indep-2"
    if step == "rollback":
        blue, gjob = client.get_meta("legacy").job, client.get_meta(green).job
        assert client.store.resolve("live") == "legacy"
        assert blue.phase == Phase.ROLLED_BACK and blue.lock is None and gjob.lock is None
        assert gjob.phase == Phase.ROLLED_BACK and client.get_meta("legacy").mirror == green
    else:
        gjob = client.get_meta(green).job
        assert client.store.resolve("live") == green and not client.store.exists("legacy")
        assert gjob.phase == Phase.CLEANED and gjob.lock is None
        assert gjob.cleanup is not None and gjob.cleanup.made and len(list((tmp / "backups").iterdir())) == 1
