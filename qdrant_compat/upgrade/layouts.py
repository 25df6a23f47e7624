"""Where the new vector is filled: the contract both upgrade layouts implement, and the one place that chooses.

* :class:`~qdrant_compat.upgrade.inplace.InPlace`: a second named vector in the same collection;
* :class:`~qdrant_compat.upgrade.bluegreen.BlueGreen`: a new (green) collection beside the old (blue) one, an
  alias switched at cutover.

A lifecycle command reads the collection's recorded job once and asks :func:`layout_of` which layout it is;
nothing outside this module tests for blue-green.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from qdrant_compat.client import CompatClient
from qdrant_compat.enums import Layout, Priority, Strategy
from qdrant_compat.metadata import CompatMeta, JobState
from qdrant_compat.results import CleanupResult, CutoverResult, RollbackResult, StatusReport
from qdrant_compat.upgrade.bluegreen import BlueGreen
from qdrant_compat.upgrade.fill import FillOptions, RunReport
from qdrant_compat.upgrade.inplace import InPlace
from qdrant_compat.upgrade.plan import UpgradePlan


class UpgradeLayout(Protocol):
    """What every layout does; ``name`` is a collection or an alias of it."""

    kind: Layout

    def status(self, client: CompatClient, name: str) -> StatusReport: ...

    def cutover(self, client: CompatClient, name: str, *, allow_partial: bool, dry_run: bool, grace: float,
                owner: str) -> CutoverResult: ...

    def rollback(self, client: CompatClient, name: str, *, dry_run: bool, grace: float, owner: str) -> RollbackResult: ...

    def cleanup(self, client: CompatClient, name: str, *, yes: bool, backup_dir: str | Path | None, dry_run: bool,
                owner: str) -> CleanupResult: ...

    def resume(self, client: CompatClient, collection: str, meta: CompatMeta, fill: FillOptions, *,
               target_ref: str | None,
               strategy: Strategy | str | None, dry_run: bool) -> RunReport | None:
        """Continue the job recorded in ``meta`` (the collection's block as the caller just read it; None: nothing
        of it to continue for this target and strategy)."""

    def start(self, client: CompatClient, collection: str, plan: UpgradePlan, fill: FillOptions, *,
              priority: Priority | str, image_field: str, dry_run: bool, meta: CompatMeta) -> RunReport:
        """A new job from ``plan`` (made from ``meta``, the block the caller just read)."""


LAYOUTS: dict[Layout, UpgradeLayout] = {Layout.IN_PLACE: InPlace(), Layout.BLUE_GREEN: BlueGreen()}


def layout_for(job: JobState | None) -> UpgradeLayout:
    """The layout of a recorded job (in place when there is none)."""
    return LAYOUTS[job.layout if job is not None else Layout.IN_PLACE]


def layout_of(client: CompatClient, name: str) -> UpgradeLayout:
    """The layout of the job recorded on ``name`` (in place when there is none, or no collection yet)."""
    coll = client.store.resolve(name)
    return layout_for(client.get_meta(coll).job if client.store.exists(coll) else None)
