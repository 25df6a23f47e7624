"""The job lock: who may take it. A dead holder on this host frees it at once; anyone else only when it expires."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from qdrant_compat.enums import Phase, Strategy
from qdrant_compat.errors import JobLockedError
from qdrant_compat.metadata import JobState, Lock
from qdrant_compat.upgrade.state import check_lock, make_owner

HOST = socket.gethostname()


def _job(owner: str | None, expires_in: float = 600.0) -> JobState:
    job = JobState(id="j1", source="m@1", source_model="m@1", target="m@2", target_model="m@2", target_fingerprint="f",
                   strategy=Strategy.BACKFILL, phase=Phase.RUNNING)
    job.lock = Lock(owner, time.time() + expires_in) if owner is not None else None
    return job


def test_no_lock_or_ones_own_lock_is_free():
    me = make_owner()
    check_lock(_job(None), me)
    check_lock(_job(me), me)


def test_a_live_holder_on_this_host_keeps_it():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(JobLockedError, match=f"being run by {HOST}:{proc.pid}:"):
            check_lock(_job(f"{HOST}:{proc.pid}:abcd1234"), make_owner())
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_holder_on_this_host_frees_it_before_it_expires():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    check_lock(_job(f"{HOST}:{dead.pid}:abcd1234", expires_in=600), make_owner())


def test_a_holder_on_another_host_keeps_it_until_it_expires():
    other = "some-other-host:1:abcd1234"  # pid 1 is alive here, but on another host it proves nothing
    with pytest.raises(JobLockedError, match="lock held for 600s more"):
        check_lock(_job(other, expires_in=600), make_owner(), now=time.time() - 0.4)
    check_lock(_job(other, expires_in=-1), make_owner())  # expired: free


def test_another_owner_in_this_very_process_counts_as_alive():
    with pytest.raises(JobLockedError):
        check_lock(_job(f"{HOST}:{os.getpid()}:other000"), make_owner())


@pytest.mark.parametrize("owner", ["garbage", f"{HOST}:notapid:x", f"{HOST}:1"])
def test_an_owner_that_cannot_be_read_is_never_taken_for_dead(owner):
    with pytest.raises(JobLockedError):
        check_lock(_job(owner), make_owner())
    check_lock(_job(owner, expires_in=-1), make_owner())


def test_every_mark_is_a_counter_and_counters_are_typed():
    from qdrant_compat.enums import Count, Mark

    assert {m.value for m in Mark} <= {c.value for c in Count}  # status reports a count per mark
    job = _job(None)
    job.bump(Count.CONVERTED, 3)
    job.bump(Mark.EXTRACTED)
    job.bump(Count.EXTRACTED, 2)
    assert job.counts == {"converted": 3, "extracted": 3}
    assert JobState.from_dict(job.to_dict()).counts == job.counts  # plain strings in the stored block
