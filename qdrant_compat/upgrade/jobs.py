"""The one owner of an upgrade job's phase: which phase may follow which, and the single function that moves it.

Every command that changes a job's phase (``run``, ``cutover``, ``rollback``, ``cleanup``, in place and blue-green)
goes through :func:`advance`, so a phase can only change along :data:`TRANSITIONS`; a move outside it is a bug or
a collection changed by hand, and is refused with both phases named rather than written.

::

    planned ──► running ◄──► filled ──► cutting_over ──► cut_over ──► cleaned
                   ▲  ▲         ▲  ▲          │  │           │
                   │  └─────────┼──┼──────────┘  │ (a failed  │
                   │            │  └─────────────┘  check)    │
                   └── rolled_back ◄──────────────────────────┘

A rolled-back job is resumed by a run (blue-green: green is caught up again) or cut over again; ``running`` and
``filled`` go both ways because a run that finds new points reopens a filled job.

A lifecycle step that changes a job outside a run (rollback, cleanup; in place and blue-green alike) first takes
the job's lock with :func:`hold` (written, then read back) and lets go of it with its last write, or with
:func:`release` on the way out of a failure: a run started meanwhile is refused instead of writing under it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qdrant_compat.enums import Phase
from qdrant_compat.errors import JobLockedError, UpgradeError
from qdrant_compat.metadata import CompatMeta, JobState, Lock
from qdrant_compat.upgrade.state import check_lock

if TYPE_CHECKING:
    from qdrant_compat.client import CompatClient

log = logging.getLogger(__name__)
ROLLBACK_LOCK_S, CLEANUP_LOCK_S = 60.0, 600.0  # a killed step on another host frees the job after this (here: at once)

P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.PLANNED: frozenset({P.RUNNING, P.FILLED, P.ROLLED_BACK}),
    P.RUNNING: frozenset({P.FILLED, P.CUTTING_OVER, P.ROLLED_BACK}),
    P.FILLED: frozenset({P.RUNNING, P.CUTTING_OVER, P.ROLLED_BACK}),
    # a cutover ends switched, or back where it started (a failed check, Ctrl-C, an undone kill)
    P.CUTTING_OVER: frozenset({P.CUT_OVER, P.FILLED, P.RUNNING, P.ROLLED_BACK}),
    # after the switch only a rollback or a cleanup moves it (a run filling late points leaves it cut over)
    P.CUT_OVER: frozenset({P.ROLLED_BACK, P.CLEANED}),
    P.ROLLED_BACK: frozenset({P.RUNNING, P.FILLED, P.CUTTING_OVER}),
    P.CLEANED: frozenset(),
}


def can_advance(frm: Phase, to: Phase) -> bool:
    """Whether a job may move from ``frm`` to ``to`` (staying in the same phase is always allowed)."""
    return frm == to or to in TRANSITIONS[frm]


def advance(job: JobState, to: Phase, collection: str = "") -> JobState:
    """Move ``job`` to phase ``to`` (in memory: the caller writes the metadata).

    Raises:
        UpgradeError: the move is not in :data:`TRANSITIONS` (names both phases and the job).
    """
    if not can_advance(job.phase, to):
        where = f" of '{collection}'" if collection else ""
        allowed = ", ".join(sorted(p.value for p in TRANSITIONS[job.phase])) or "none: it is final"
        raise UpgradeError(f"upgrade job {job.id}{where} is '{job.phase}' and cannot become '{to}' (from "
                           f"'{job.phase}' it can become: {allowed}); was the collection's metadata changed by hand?")
    job.phase = to
    return job


def job_of(meta: CompatMeta, collection: str) -> JobState:
    """The job in ``meta``.

    Raises:
        UpgradeError: ``collection`` has no upgrade job."""
    if meta.job is None:
        raise UpgradeError(f"collection '{collection}' has no upgrade job; start one with 'upgrade run'")
    return meta.job


def hold(client: CompatClient, collection: str, meta: CompatMeta, owner: str, seconds: float) -> CompatMeta:
    """Take the job's lock for one lifecycle step: written, then read back (two takers racing on a server: the
    later write wins and the other stops here), so a run cannot start under the step. ``meta``: the block as the
    caller just read it. Returns the block read back.

    Raises:
        JobLockedError: another live process holds the job, or took it meanwhile; nothing was changed."""
    job = job_of(meta, collection)
    check_lock(job, owner)
    job.lock = Lock(owner, time.time() + seconds)
    meta.job = job
    client.put_meta(collection, meta)
    meta = client.get_meta(collection)
    lock = job_of(meta, collection).lock
    if lock is None or lock.owner != owner:
        raise JobLockedError(f"upgrade job {job.id} was taken by {lock.owner if lock else 'another process'} meanwhile; "
                             "nothing was changed")
    return meta


def release(client: CompatClient, collection: str, owner: str) -> None:
    """On the way out of a failed step: let go of the lock if it is still ours (best effort), and forget a backup
    that was named but never written (a full disk: the next cleanup may name another folder)."""
    try:
        meta = client.get_meta(collection)
        if meta.job is not None and meta.job.lock is not None and meta.job.lock.owner == owner:
            meta.job.lock = None
            if unwritten_backup(meta.job):
                meta.job.cleanup = None
            client.put_meta(collection, meta)
    except Exception:  # pragma: no cover - the lock then expires, or its dead holder is seen
        log.warning("could not release the job lock of %s", collection)


def unwritten_backup(job: JobState) -> bool:
    """The cleanup journal names a backup file that was never written (killed, or failed, before it was complete)."""
    c = job.cleanup
    return c is not None and not c.made and not c.dropped and not Path(c.backup).exists()
