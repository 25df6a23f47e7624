"""The in-place layout: the new model's vector is filled beside the old one in the same collection; cutover
switches ``read``/``write`` to it, rollback switches back, cleanup drops the old vector.

:class:`InPlace` is this layout behind the :class:`~qdrant_compat.upgrade.layouts.UpgradeLayout` contract; the
blue-green layout (:mod:`qdrant_compat.upgrade.bluegreen`) uses these same steps on its green collection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from qdrant_compat.client import PROVENANCE_KEY, CompatClient
from qdrant_compat.enums import Layout, Mark, Phase, Priority, Relation, Strategy, VectorState
from qdrant_compat.errors import UpgradeError
from qdrant_compat.metadata import CleanupRecord, CompatMeta, Edge, Lock
from qdrant_compat.results import CleanupResult, CutoverResult, RollbackResult, StatusReport, VectorStatus
from qdrant_compat.routing import candidate_routes
from qdrant_compat.store import mark_is
from qdrant_compat.upgrade.fill import FillOptions, RunReport, fill_in_place, resumable
from qdrant_compat.upgrade.jobs import CLEANUP_LOCK_S, ROLLBACK_LOCK_S, advance, hold, job_of, release, unwritten_backup
from qdrant_compat.upgrade.plan import UpgradePlan
from qdrant_compat.upgrade.state import JobState, check_lock, provenance_key

log = logging.getLogger(__name__)


def _prov_count(client: CompatClient, collection: str, vector: str, value: Mark) -> int:
    return client.store.count(collection, mark_is(f"{PROVENANCE_KEY}.{provenance_key(vector)}", value.value))


def collection_status(client: CompatClient, collection: str, *, blue_green: dict | None = None) -> StatusReport:  # type: ignore[type-arg]
    """Per named vector of ``collection``: points holding it, and how many were extracted, converted, missing, failed.

    ``converted`` counts only for a vector a converting upgrade filled; points of other vectors that were written
    directly (``index``, ``upsert``, an adopted collection's vectors) are ``indexed``."""
    meta = client.get_meta(collection)
    vectors = {}
    for name, entry in meta.vectors.items():
        have = client.count_with_vector(collection, name)
        marks = {k: _prov_count(client, collection, name, k) for k in (Mark.EXTRACTED, Mark.MISSING, Mark.FAILED,
                                                                                Mark.UNREACHABLE)}
        # a vector without an 'extracted' mark was written through a converter (rewrites carry no mark) -- unless
        # the job filling it never converts: then it is an extraction whose mark a crash prevented
        unmarked_vec = max(have - marks[Mark.EXTRACTED], 0)
        job = meta.job
        filled_by_job = job is not None and job.target == name and job.strategy != Strategy.ADOPT
        converts = filled_by_job and job is not None and job.strategy.converts
        # an unmarked vector is: a conversion (a converting job's target: rewrites carry no mark), an extraction
        # whose mark a crash prevented (a backfill-only job's target), or written directly (index, upsert, adopt)
        vectors[name] = VectorStatus(model=entry.model, state=entry.state, points=have, extracted=marks[Mark.EXTRACTED],
                                     converted=unmarked_vec if converts else 0, missing=marks[Mark.MISSING],
                                     failed=marks[Mark.FAILED], unreachable=marks[Mark.UNREACHABLE],
                                     unmarked=unmarked_vec if filled_by_job and not converts else 0,
                                     indexed=0 if filled_by_job else unmarked_vec)
    total = client.store.count(collection)
    job = meta.job
    lacking = total - vectors[job.target].points if job is not None and job.target in vectors else 0
    return StatusReport(collection=collection, points=total, read=meta.read, write=list(meta.write), vectors=vectors,
                        job=job, blue_green=blue_green, lacking_target=lacking)


CUTOVER_GRACE_S = 2.0
CUTOVER_LOCK_S = 60.0  # a cutover holds the job's lock for its grace period plus this (a killed one frees it then)


def cutover_lock(owner: str, grace: float) -> Lock:
    """The lock a cutover holds while it announces, waits and checks: other runs and cutovers are refused.

    @private
    """
    return Lock(owner, time.time() + max(0.0, grace) + CUTOVER_LOCK_S)


def cutover_in_place(client: CompatClient, collection: str, *, allow_partial: bool, dry_run: bool, grace: float,
                     owner: str, extra_check: Callable[[], None] | None = None) -> CutoverResult:
    """Make the job's target the vector queries read and writes fill.

    A protocol, not one check, so that no point written meanwhile is left without the target vector:

    1. the job's phase becomes ``cutting_over`` (one metadata write). From then on, every write through
       :class:`~qdrant_compat.client.CompatClient` (which reads the metadata fresh before writing) either
       reaches the target vector or is refused with a clear error;
    2. wait ``grace`` seconds, so that writes that read the metadata *before* step 1 have landed;
    3. check that every point holds the target (else back to ``filled``, nothing switched, the count reported);
    4. switch ``read``/``write`` to the target (one metadata write).

    Checks: every point holds a target vector (always refused otherwise: those points would become
    unfindable); with ``allow_partial`` some may hold *converted* rather than extracted vectors or have
    missing images recorded. A cutover killed between 1 and 4 leaves ``cutting_over``: run it again (or
    ``upgrade run`` / ``rollback``).

    Raises:
        UpgradeError: a check failed (the message gives the counts and what to do).
    """
    meta = client.get_meta(collection)
    job = job_of(meta, collection)
    check_lock(job, owner)
    if job.phase == Phase.CUT_OVER:
        return CutoverResult(collection=collection, read=meta.read, source=job.source, target=job.target, already=True)
    if job.strategy == Strategy.ADOPT:
        raise UpgradeError(f"job {job.id} adopted {job.target_model} through its bct edge: queries and writes with it "
                           "already work; to give it its own vector run 'upgrade run --to "
                           f"{job.target_model} --strategy backfill'")
    if job.phase == Phase.CLEANED:
        raise UpgradeError(f"job {job.id} was cut over and cleaned up already")
    _check_complete(client, collection, job, allow_partial)
    if dry_run:
        if extra_check is not None:
            extra_check()
        return _cutover_result(client, collection, job, dry_run=True)
    # 1. announce: writers that cannot reach the target are refused from now on
    previous = job.phase if job.phase != Phase.CUTTING_OVER else Phase.FILLED
    advance(job, Phase.CUTTING_OVER, collection)
    job.lock = cutover_lock(owner, grace)
    meta.job = job
    client.put_meta(collection, meta)
    try:
        # 2. let writes that read the metadata before the announcement land
        time.sleep(max(0.0, grace))
        # 3. the check that counts, now that no write can slip past it
        meta = client.get_meta(collection)
        job = job_of(meta, collection)
        _check_complete(client, collection, job, allow_partial)
        if extra_check is not None:
            extra_check()
    except BaseException:  # a failed check, an error, or Ctrl-C in the grace period: back to where it was
        meta = client.get_meta(collection)
        job = job_of(meta, collection)
        advance(job, previous, collection)
        job.lock = None
        meta.job = job
        client.put_meta(collection, meta)
        raise
    # 4. switch
    out = _cutover_result(client, collection, job, dry_run=False)
    have = client.count_with_vector(collection, job.target)
    meta.vectors[job.target].state = VectorState.ACTIVE
    meta.vectors[job.target].filled = have
    tgt_card = client.registry.verified_card(job.target_model)
    back = [r for r in candidate_routes(tgt_card, client.with_model_edges(meta, tgt_card)) if r.vector == job.source]
    meta.read = job.target
    meta.write = [job.target] + ([job.source] if back else [])
    if not back:
        meta.vectors[job.source].state = VectorState.RETIRED  # its model's queries would miss new points: refuse them
    advance(job, Phase.CUT_OVER, collection)
    job.lock = None
    meta.job = job
    client.put_meta(collection, meta)
    out.source_kept_in_sync = bool(back)
    log.info("cut over %s from %s to %s", collection, job.source, job.target)
    return out


def _check_complete(client: CompatClient, collection: str, job: JobState, allow_partial: bool) -> None:
    total = client.store.count(collection)
    have = client.count_with_vector(collection, job.target)
    if have < total:
        raise UpgradeError(
            f"cutover refused: {total - have} of {total} points have no '{job.target}' vector yet and would become "
            "unfindable; run 'upgrade run' to finish (points with missing images need a converter or their images)"
        )
    pending = total - _prov_count(client, collection, job.target, Mark.EXTRACTED)
    if pending and job.strategy != Strategy.CONVERT and not allow_partial:
        raise UpgradeError(
            f"cutover refused: {pending} of {total} points hold converted vectors or have missing/failed images "
            "instead of re-extracted ones; finish the backfill or pass --allow-partial to accept them"
        )


def _cutover_result(client: CompatClient, collection: str, job: JobState, *, dry_run: bool) -> CutoverResult:
    total = client.store.count(collection)
    return CutoverResult(collection=collection, read=job.target, source=job.source, target=job.target, points=total,
                         not_extracted=total - _prov_count(client, collection, job.target, Mark.EXTRACTED), dry_run=dry_run)


def rollback_in_place(client: CompatClient, collection: str, *, dry_run: bool, owner: str) -> RollbackResult:
    meta = client.get_meta(collection)
    job = job_of(meta, collection)
    check_lock(job, owner)
    if job.cleanup is not None and not job.cleanup.made and not job.cleanup.dropped:
        job.cleanup = None  # a cleanup killed before its backup was recorded: nothing was dropped
    if job.phase == Phase.CLEANED or job.source not in meta.vectors or (job.cleanup is not None):
        where = f" (backup: {job.cleanup.backup})" if job.cleanup is not None else ""
        raise UpgradeError(f"cannot roll back: vector '{job.source}' ({job.source_model}) was dropped by cleanup; "
                           f"restore the backup named in the job's cleanup record{where}")
    if not dry_run:
        meta = hold(client, collection, meta, owner, ROLLBACK_LOCK_S)
        job = job_of(meta, collection)
    try:
        return _rollback_held(client, collection, meta, job, dry_run)
    except BaseException:
        if not dry_run:
            release(client, collection, owner)
        raise


def _rollback_held(client: CompatClient, collection: str, meta: CompatMeta, job: JobState,
                   dry_run: bool) -> RollbackResult:
    total = client.store.count(collection)
    have = client.count_with_vector(collection, job.source)
    if have < total:
        raise UpgradeError(f"cannot roll back: {total - have} point(s) written since cutover have no "
                           f"'{job.source}' vector; re-run an upgrade towards {job.source_model} for them first")
    out = RollbackResult(collection=collection, read=job.source, dry_run=dry_run)
    if dry_run:
        return out
    meta.read = job.source
    meta.write = [job.source]
    meta.vectors[job.source].state = VectorState.ACTIVE
    if job.target in meta.vectors and job.strategy != Strategy.ADOPT:
        meta.vectors[job.target].state = VectorState.FILLING  # kept: a later run only catches up
    if job.strategy == Strategy.ADOPT:
        # revoke, not just remove: the model card's own lineage would otherwise bring the route straight back
        meta.edges = [e for e in meta.edges if not (e.query == job.target_model and e.stored == job.source_model)]
        tgt = client.registry.verified_card(job.target_model)
        src = client.registry.verified_card(job.source_model)
        meta.edges.append(Edge(query=tgt.ref, query_fingerprint=tgt.fingerprint, stored=src.ref,
                               stored_fingerprint=src.fingerprint, relation=Relation.BCT,
                               evidence={"criterion_met": False, "revoked": f"rolled back (job {job.id})"}))
    advance(job, Phase.ROLLED_BACK, collection)
    job.lock = None
    meta.job = job
    client.put_meta(collection, meta)
    return out


def cleanup_in_place(client: CompatClient, collection: str, *, yes: bool, backup_dir: str | Path | None, dry_run: bool,
                     owner: str) -> CleanupResult:
    """Drop the old vector after cutover, backed up first (a server snapshot, or a backup file for the
    embedded store; see :meth:`~qdrant_compat.store.Store.backup`).

    Journaled: the backup is recorded in the job (``job.cleanup``) *before* the drop, so a cleanup that was
    interrupted resumes the drop and never backs up the half-dropped collection again.

    Raises:
        UpgradeError: not cut over yet, or ``yes`` not given.
    """
    meta = client.get_meta(collection)
    job = job_of(meta, collection)
    check_lock(job, owner)
    if job.phase == Phase.CLEANED:
        return CleanupResult(collection=collection, drops=job.source,
                             backup=job.cleanup.backup if job.cleanup else None, resumed=True)
    if job.phase != Phase.CUT_OVER:
        raise UpgradeError(f"cleanup needs a cut-over job; job {job.id} is '{job.phase}'")
    if job.source == "":
        raise UpgradeError("the source is the collection's unnamed vector, which Qdrant cannot drop; it stays")
    resumed = job.cleanup is not None
    out = CleanupResult(collection=collection, drops=job.source, backup=job.cleanup.backup if job.cleanup else None,
                        resumed=resumed, dry_run=dry_run)
    if dry_run:
        return out
    if not yes:
        raise UpgradeError(f"cleanup drops vector '{job.source}' for good; pass --yes (a backup is made first)")
    meta = hold(client, collection, meta, owner, CLEANUP_LOCK_S)
    job = job_of(meta, collection)
    try:
        return _cleanup_held(client, collection, meta, job, backup_dir, out)
    except BaseException:
        release(client, collection, owner)  # the journal (job.cleanup) stays: a rerun resumes the drop
        raise


def _cleanup_held(client: CompatClient, collection: str, meta: CompatMeta, job: JobState,
                  backup_dir: str | Path | None, out: CleanupResult) -> CleanupResult:
    if unwritten_backup(job):
        job.cleanup = None  # named but never written: plan it anew (in the folder given now)
        out.backup = None
    if job.cleanup is None:  # count and compare before dropping: a point that holds only the old vector would be left
        from qdrant_compat.store import both, has_vector, lacks_vector

        only_old = client.store.count(collection, both(has_vector(job.source), lacks_vector(job.target)))
        if only_old:
            raise UpgradeError(
                f"cleanup refused: {only_old} point(s) of '{collection}' hold '{job.source}' but not '{job.target}' "
                "(written after the cutover around qdrant-compat, e.g. with plain qdrant-client); dropping the old "
                f"vector would leave them with none. Fill them first with 'upgrade run {collection}', then clean up. "
                "Nothing was dropped")
    if job.cleanup is None:
        # step 1: the backup, recorded before anything is dropped. The embedded store's backup file is named in
        # the journal first, so a cleanup killed after writing it and before recording it does not make a second
        target = client.store.backup_target(collection, backup_dir)
        if target is not None:
            job.cleanup = CleanupRecord(vector=job.source, backup=target, made=False)
            meta.job = job
            client.put_meta(collection, meta)
        made = client.store.backup(collection, backup_dir, target=target)
        job.cleanup = CleanupRecord(vector=job.source, backup=made)
        meta.job = job
        client.put_meta(collection, meta)
        out.backup = job.cleanup.backup
    elif not job.cleanup.made:  # killed after the file was complete, before it was recorded: it is the backup
        job.cleanup.made = True
        meta.job = job
        client.put_meta(collection, meta)
        out.backup = job.cleanup.backup
    else:
        log.info("resuming the cleanup of %s: backup %s already made", collection, job.cleanup.backup)
    # step 2: the drop (idempotent: a vector already gone is not dropped twice)
    if job.source in client.store.vector_params(collection):
        client.store.drop_vector(collection, job.source)
    meta = client.get_meta(collection)
    job = job_of(meta, collection)
    assert job.cleanup is not None
    meta.vectors.pop(job.source, None)
    meta.write = [w for w in meta.write if w != job.source]
    meta.edges = [e for e in meta.edges if e.stored != job.source_model]
    job.cleanup.dropped = True
    advance(job, Phase.CLEANED, collection)
    job.lock = None
    meta.job = job
    client.put_meta(collection, meta)
    from qdrant_compat.store import lacks_vector

    # a raw write that landed between the count above and the drop leaves a point with no vector at all
    out.left_without_vector = client.store.count(collection, lacks_vector(job.target))
    if out.left_without_vector:
        log.warning("cleanup of %s: %d point(s) written around qdrant-compat during the cleanup hold no vector now "
                    "(their old vectors are in the backup %s); %s", collection, out.left_without_vector,
                    job.cleanup.backup, f"'upgrade run {collection}' re-extracts them from their images"
                    if job.strategy.extracts else "restore them from the backup and upgrade them again")
    return out


class InPlace:
    """The in-place layout behind :class:`~qdrant_compat.upgrade.layouts.UpgradeLayout`."""

    kind = Layout.IN_PLACE

    def status(self, client: CompatClient, name: str) -> StatusReport:
        return collection_status(client, client.store.resolve(name))

    def cutover(self, client: CompatClient, name: str, *, allow_partial: bool, dry_run: bool, grace: float,
                owner: str) -> CutoverResult:
        return cutover_in_place(client, client.store.resolve(name), allow_partial=allow_partial, dry_run=dry_run,
                                grace=grace, owner=owner)

    def rollback(self, client: CompatClient, name: str, *, dry_run: bool, grace: float, owner: str) -> RollbackResult:
        return rollback_in_place(client, client.store.resolve(name), dry_run=dry_run, owner=owner)

    def cleanup(self, client: CompatClient, name: str, *, yes: bool, backup_dir: str | Path | None, dry_run: bool,
                owner: str) -> CleanupResult:
        return cleanup_in_place(client, client.store.resolve(name), yes=yes, backup_dir=backup_dir, dry_run=dry_run,
                                owner=owner)

    def resume(self, client: CompatClient, collection: str, meta: CompatMeta, fill: FillOptions, *,
               target_ref: str | None,
               strategy: Strategy | str | None, dry_run: bool) -> RunReport | None:
        """Continue the collection's recorded job (or catch a cut-over one up); None when there is none to continue."""
        if not resumable(meta.job, target_ref, strategy):
            return None
        return fill_in_place(client, collection, target_ref, fill, strategy=strategy, dry_run=dry_run, meta=meta)

    def start(self, client: CompatClient, collection: str, plan: UpgradePlan, fill: FillOptions, *,
              priority: Priority | str, image_field: str, dry_run: bool, meta: CompatMeta) -> RunReport:
        """A new job from ``plan``, filled here."""
        return fill_in_place(client, collection, plan.target_model, fill, strategy=plan.strategy, converter=plan.converter,
                             priority=priority, image_field=image_field, dry_run=dry_run, plan=plan, meta=meta)
