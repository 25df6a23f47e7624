"""``upgrade status|cutover|rollback|cleanup``: see, switch, undo, and finally drop the old vector.

Each command asks the collection's layout (:func:`~qdrant_compat.upgrade.layouts.layout_of`) to do it, as this
process (one lock owner per command).
"""

from __future__ import annotations

from pathlib import Path

from qdrant_compat.client import CompatClient
from qdrant_compat.results import CleanupResult, CutoverResult, RollbackResult, StatusReport
from qdrant_compat.upgrade.inplace import CUTOVER_GRACE_S
from qdrant_compat.upgrade.layouts import layout_of
from qdrant_compat.upgrade.state import make_owner


def upgrade_status(client: CompatClient, collection: str) -> StatusReport:
    """Per named vector: points holding it, and how many were extracted, converted, missing, failed.

    ``converted`` counts only for a vector a converting upgrade filled; points of other vectors that were written
    directly (``index``, ``upsert``, an adopted collection's vectors) are ``indexed``. For a blue-green job (named by
    its alias, blue or green collection) the report is green's, where the new vector is filled, with
    ``blue_green`` saying which collection the alias serves."""
    return layout_of(client, collection).status(client, collection)


def cutover(client: CompatClient, collection: str, *, allow_partial: bool = False, dry_run: bool = False,
            grace: float = CUTOVER_GRACE_S) -> CutoverResult:
    """Make the job's target the vector queries read and writes fill (the protocol:
    :func:`~qdrant_compat.upgrade.inplace.cutover_in_place`); for a blue-green job, then point the alias at the
    new collection (:func:`qdrant_compat.upgrade.bluegreen.cutover`).

    Raises:
        UpgradeError: a check failed (the message gives the counts and what to do).
    """
    return layout_of(client, collection).cutover(client, collection, allow_partial=allow_partial, dry_run=dry_run,
                                                 grace=grace, owner=make_owner())


def rollback(client: CompatClient, collection: str, *, dry_run: bool = False,
             grace: float = CUTOVER_GRACE_S) -> RollbackResult:
    """Return queries and writes to the job's source vector while it still exists (blue-green: point the
    alias back at the old collection, :func:`qdrant_compat.upgrade.bluegreen.rollback`; the new collection keeps
    copying writes into the old one for ``grace`` seconds after the switch).

    Raises:
        UpgradeError: the source vector was cleaned up, or points written since cutover lack it.
    """
    return layout_of(client, collection).rollback(client, collection, dry_run=dry_run, grace=grace, owner=make_owner())


def cleanup(client: CompatClient, collection: str, *, yes: bool = False, backup_dir: str | Path | None = None,
            dry_run: bool = False) -> CleanupResult:
    """Drop the old vector after cutover, backed up first (a server snapshot, or a backup file for the
    embedded store; see :meth:`~qdrant_compat.store.Store.backup`); journaled, so an interrupted cleanup resumes
    (:func:`~qdrant_compat.upgrade.inplace.cleanup_in_place`). Blue-green: drops the old collection instead
    (:func:`qdrant_compat.upgrade.bluegreen.cleanup`).

    Raises:
        UpgradeError: not cut over yet, or ``yes`` not given.
    """
    return layout_of(client, collection).cleanup(client, collection, yes=yes, backup_dir=backup_dir, dry_run=dry_run,
                                                 owner=make_owner())
