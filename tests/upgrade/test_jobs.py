"""The job's phase has one owner (#18): every move goes through ``advance`` along ``TRANSITIONS``."""

from __future__ import annotations

import pytest

from qdrant_compat.enums import Phase, Strategy
from qdrant_compat.errors import UpgradeError
from qdrant_compat.metadata import JobState
from qdrant_compat.upgrade.jobs import TRANSITIONS, advance, can_advance


def _job(phase: Phase) -> JobState:
    return JobState(id="j1", source="a@1", source_model="a@1", target="a@2", target_model="a@2", target_fingerprint="f",
                    strategy=Strategy.BACKFILL, phase=phase)


def test_every_phase_is_reachable_from_planned_and_cleaned_is_final():
    seen, todo = {Phase.PLANNED}, [Phase.PLANNED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(Phase)
    assert TRANSITIONS[Phase.CLEANED] == frozenset()
    assert set(TRANSITIONS) == set(Phase)


@pytest.mark.parametrize("frm,to", [(Phase.CLEANED, Phase.RUNNING), (Phase.CUT_OVER, Phase.RUNNING),
                                    (Phase.PLANNED, Phase.CUT_OVER), (Phase.CUT_OVER, Phase.CUTTING_OVER)])
def test_a_move_outside_the_table_is_refused_and_changes_nothing(frm, to):
    job = _job(frm)
    with pytest.raises(UpgradeError, match=rf"upgrade job j1 of 'g' is '{frm}' and cannot become '{to}'"):
        advance(job, to, "g")
    assert job.phase == frm


def test_the_cutover_protocol_moves_along_the_table():
    job = _job(Phase.PLANNED)
    for to in (Phase.RUNNING, Phase.FILLED, Phase.CUTTING_OVER, Phase.FILLED, Phase.CUTTING_OVER, Phase.CUT_OVER,
               Phase.ROLLED_BACK, Phase.RUNNING, Phase.FILLED, Phase.CUTTING_OVER, Phase.CUT_OVER, Phase.CLEANED):
        assert advance(job, to).phase == to
    assert can_advance(Phase.CLEANED, Phase.CLEANED)  # staying put is always allowed (a resumed cleanup)
