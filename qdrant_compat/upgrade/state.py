"""Upgrade job state, kept in the collection's metadata so any machine can see and resume it.

The block is small (ids of work are never stored there): which vector is being filled from which, by
what strategy, the phase, counters, and a lock with an expiry so a dead holder never blocks forever.
Per-point progress lives in the points themselves (the target vector and a provenance payload field),
which is what makes every step idempotent and resumable after SIGKILL.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from qdrant_compat.errors import JobLockedError
from qdrant_compat.metadata import JobState, Lock, provenance_key

DEFAULT_LOCK_TTL = 60.0
__all__ = ["DEFAULT_LOCK_TTL", "JobState", "Lock", "check_lock", "make_owner", "new_job_id", "provenance_key"]


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_dead(owner: str) -> bool:
    """True when the holder ran on this host and its process is gone."""
    try:
        host, pid_s, _ = owner.split(":")
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_lock(job: JobState, owner: str, now: float | None = None) -> None:
    """Raise :class:`JobLockedError` if another live holder has the job."""
    now = time.time() if now is None else now
    lk = job.lock
    if lk is None or lk.owner == owner:
        return
    if lk.expires_at <= now or _holder_dead(lk.owner):
        return
    raise JobLockedError(
        f"upgrade job {job.id} is being run by {lk.owner} (lock held for {lk.expires_at - now:.0f}s more); "
        "wait for it to finish, or for the lock to expire if that process died"
    )
