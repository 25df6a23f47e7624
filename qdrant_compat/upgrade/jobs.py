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
"""

from __future__ import annotations

from qdrant_compat.enums import Phase
from qdrant_compat.errors import UpgradeError
from qdrant_compat.metadata import JobState

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
