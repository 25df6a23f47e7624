"""Blue-green upgrades: fill a new collection beside the old one, then switch an alias.

For a collection that cannot take a second named vector in place (Qdrant older than 1.18, where
``create_vector_name`` does not exist), the upgrade builds a *green* collection with named vectors: every
vector of the old (*blue*) collection under its own name (the unnamed vector under the old model's
reference) plus the new model's vector. Then:

* ``run``: records the job in the blue collection (naming the green one before it exists), creates the green
  collection with its own metadata and job, turns on *mirroring* (every write through
  :class:`~qdrant_compat.client.CompatClient` to blue also goes to green), *syncs* blue into green (copies what
  green lacks or holds differently, deletes what blue no longer has), and fills the new vector in green
  with the ordinary in-place machinery (convert and/or backfill; marks, stamps, locks, resumable).
* ``cutover``: announces ``cutting_over`` in both, waits the grace period, checks green is complete *and* in
  sync with blue (re-checking differing points once, so a write in flight is not a false alarm), switches
  green's metadata, then re-points the alias in one request (``update_collection_aliases``). Green mirrors
  back into blue when the new model can write blue's vector, so a rollback loses nothing.
* ``rollback``: checks blue holds everything green holds, then points the alias back.
* ``cleanup``: backs blue up (journaled in green's job before anything is dropped), stops mirroring, drops blue.

Queries through the alias are served by blue until the switch and by green after it; nothing is copied
underneath a reader. Qdrant cannot rename a collection, so applications must query through the alias.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qdrant_compat.client import PROVENANCE_KEY, STAMP_KEY, CompatClient, user_payload
from qdrant_compat.enums import Layout, Phase, Priority, Strategy, VectorState
from qdrant_compat.errors import JobLockedError, UpgradeError
from qdrant_compat.metadata import META_KEY, CleanupRecord, CompatMeta, JobState, Lock, VectorEntry
from qdrant_compat.results import CleanupResult, CutoverResult, Result, RollbackResult, StatusReport
from qdrant_compat.routing import write_routes
from qdrant_compat.upgrade.fill import FillOptions, RunReport, fill_in_place, heartbeat_interval, refuse_during_cutover
from qdrant_compat.upgrade.inplace import InPlace, collection_status, cutover_in_place, cutover_lock, rollback_in_place
from qdrant_compat.upgrade.jobs import CLEANUP_LOCK_S, ROLLBACK_LOCK_S, advance, hold, job_of, release, unwritten_backup
from qdrant_compat.upgrade.plan import UpgradePlan, green_name
from qdrant_compat.upgrade.state import check_lock

log = logging.getLogger(__name__)


def green_vector(job: JobState, blue_vector: str) -> str:
    """A blue vector's name in green: the same, except the unnamed vector, which takes its model's reference."""
    if blue_vector:
        return blue_vector
    return job.source_model if job.source == "" else "default"


@dataclass
class SyncReport(Result):
    """One pass of blue -> green: what was copied, replaced, deleted, and what still differs."""

    copied: int = 0
    replaced: int = 0
    deleted: int = 0
    checked: int = 0
    differing: int = 0  # still differing after three copies (writes racing with them): left for the next pass


def _close(a: Any, b: Any) -> bool:
    """Equal as stored vectors: the same direction and length, or the same direction where one side was unit-normalised
    (Qdrant normalises cosine vectors on write; the embedded store may return the raw vector a client wrote)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        return False
    if np.allclose(x, y, rtol=1e-5, atol=1e-6):
        return True
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    unit = abs(nx - 1.0) < 1e-4 or abs(ny - 1.0) < 1e-4
    return bool(unit and nx > 0 and ny > 0 and np.allclose(x / nx, y / ny, rtol=1e-5, atol=1e-6))


def _same(b: Any, g: Any | None, names: dict[str, str]) -> bool:
    """Green's copy ``g`` of blue point ``b``: same user payload, same write stamp, same vectors (float tolerance)."""
    if g is None:
        return False
    bp, gp = b.payload or {}, g.payload or {}
    if user_payload(bp) != user_payload(gp):
        return False
    if (bp.get(PROVENANCE_KEY) or {}).get(STAMP_KEY) != (gp.get(PROVENANCE_KEY) or {}).get(STAMP_KEY):
        return False
    bv = b.vector if isinstance(b.vector, dict) else {"": b.vector}
    gv = g.vector if isinstance(g.vector, dict) else {"": g.vector}
    for name, vec in bv.items():
        other = gv.get(names.get(name, name))
        if vec is None:
            continue
        if other is None or not _close(vec, other):
            return False
    return True


class Mirror:
    """Blue -> green copying and comparing, through the store's public API only."""

    def __init__(self, client: CompatClient, blue: str, green: str, job: JobState) -> None:
        self.client, self.blue, self.green = client, blue, green
        self.names = {v: green_vector(job, v) for v in client.store.vector_params(blue)}

    def _green_of(self, ids: list[Any]) -> dict[Any, Any]:
        recs = self.client.store.retrieve(self.green, ids, with_vectors=list(self.names.values()), with_payload=True)
        return {r.id: r for r in recs}

    def _copy(self, recs: list[Any]) -> None:
        vecs = [{self.names[k]: v for k, v in (r.vector if isinstance(r.vector, dict) else {"": r.vector}).items()}
                for r in recs]
        self.client.store.upsert(self.green, [r.id for r in recs], vecs, [r.payload or {} for r in recs])

    def sync(self, *, batch: int = 256, heartbeat: Callable[[], None] | None = None) -> SyncReport:
        """Make green hold what blue holds. Idempotent and resumable: a pass after a crash copies only what
        green lacks or holds differently. A point written to blue while it is being copied is re-read and
        copied again (the copy never leaves an older version behind)."""
        rep = SyncReport()
        store = self.client.store
        for recs in store.scroll_pages(self.blue, batch=batch, with_vectors=True, with_payload=True):
            have = self._green_of([r.id for r in recs])
            todo = [r for r in recs if not _same(r, have.get(r.id), self.names)]
            rep.checked += len(recs)
            rep.copied += sum(1 for r in todo if r.id not in have)
            rep.replaced += sum(1 for r in todo if r.id in have)
            for _attempt in range(3):
                if not todo:
                    break
                self._copy(todo)
                # re-read blue: a write that landed in blue while we copied must win in green too
                now = {r.id: r for r in store.retrieve(self.blue, [r.id for r in todo], with_vectors=True, with_payload=True)}
                gone = [r.id for r in todo if r.id not in now]
                store.delete_points(self.green, gone)
                todo = [now[r.id] for r in todo if r.id in now and not _same(now[r.id], r, {k: k for k in self.names})]
            rep.differing += len(todo)  # still racing after three copies: left for the next pass
            if heartbeat is not None:
                heartbeat()
        for extra in self._green_only(batch):  # deleted from blue before mirroring saw it
            store.delete_points(self.green, extra)
            rep.deleted += len(extra)
        return rep

    def _green_only(self, batch: int) -> Iterator[list[Any]]:
        """Ids of green points blue does not hold, a page at a time (ids only: nothing else is read)."""
        store = self.client.store
        for recs in store.scroll_pages(self.green, batch=batch, with_vectors=False, with_payload=False):
            ids = [r.id for r in recs]
            present = {r.id for r in store.retrieve(self.blue, ids, with_vectors=False, with_payload=False)}
            extra = [i for i in ids if i not in present]
            if extra:
                yield extra

    def differences(self, *, batch: int = 256, recheck: float = 0.5, reverse: bool = False) -> int:
        """Points that differ between blue and green (missing from one, or different), counted in both directions.

        ``reverse``: only check that blue holds everything green holds (what a rollback needs). Differing points
        are read again after ``recheck`` seconds, so a write caught between its blue and green halves is not
        counted."""
        store = self.client.store
        inverse = {g: b for b, g in self.names.items()}

        def diff_ids(src: str, dst: str, src_names: dict[str, str]) -> list[Any]:
            out = []
            for recs in store.scroll_pages(src, batch=batch, with_vectors=True, with_payload=True):
                other = {r.id: r for r in store.retrieve(dst, [r.id for r in recs], with_vectors=True, with_payload=True)}
                out += [r.id for r in recs if not _same(_only(r, src_names), other.get(r.id), src_names)]
            return out

        if reverse:  # every green point, compared in full with blue's
            bad = set(diff_ids(self.green, self.blue, inverse))
        else:  # every blue point compared in full; the other way only green's extra ids (the rest is compared)
            bad = set(diff_ids(self.blue, self.green, self.names))
            bad |= {i for extra in self._green_only(batch) for i in extra}
        if bad and recheck > 0:
            time.sleep(recheck)
            ids = list(bad)
            b = {r.id: r for r in store.retrieve(self.blue, ids, with_vectors=True, with_payload=True)}
            g = {r.id: r for r in store.retrieve(self.green, ids, with_vectors=True, with_payload=True)}
            bad = {i for i in ids if (i in b) != (i in g) or (i in b and not _same(_only(g[i], inverse), b[i], inverse))}
        return len(bad)


def _only(rec: Any, names: dict[str, str]) -> Any:
    """``rec`` with only the vectors named in ``names`` (green's new-model vector is not compared with blue)."""
    v = rec.vector if isinstance(rec.vector, dict) else {"": rec.vector}
    return _Rec(rec.id, {k: x for k, x in v.items() if k in names}, rec.payload)


@dataclass
class _Rec:
    id: Any
    vector: dict[str, Any]
    payload: dict[str, Any] | None


# ------------------------------------------------------------------------------------------------- the jobs
def pair(client: CompatClient, name: str) -> tuple[str, str, JobState, JobState | None]:
    """(blue, green, blue job, green job) of the blue-green job ``name`` (an alias, the blue or the green
    collection) belongs to. The green job is None while green does not exist yet; the blue job is rebuilt
    from green's after blue was cleaned up.

    Raises:
        UpgradeError: ``name`` has no blue-green job.
    """
    coll = client.store.resolve(name)
    meta = client.get_meta(coll)
    job = meta.job
    if job is None or job.layout != Layout.BLUE_GREEN:
        raise UpgradeError(f"collection '{coll}' has no blue-green upgrade job")
    if job.green:
        green = job.green
        return coll, green, job, client.get_meta(green).job if client.store.exists(green) else None
    assert job.blue
    green, blue = coll, job.blue
    bjob = client.get_meta(blue).job if client.store.exists(blue) else None
    return blue, green, bjob or job, job


def is_blue_green(client: CompatClient, name: str) -> bool:
    coll = client.store.resolve(name)
    if not client.store.exists(coll):
        return False
    job = client.get_meta(coll).job
    return job is not None and job.layout == Layout.BLUE_GREEN


def create_green(client: CompatClient, blue: str, job: JobState, bmeta: CompatMeta | None = None) -> CompatMeta:
    """Create the green collection (idempotent: an existing green of this job is kept); returns green's block.
    ``bmeta``: blue's block as the caller just read it (read here when None).

    Raises:
        UpgradeError: a collection of that name exists and is not this job's green collection.
    """
    green = job.green
    assert green
    store = client.store
    if store.exists(green):
        gmeta = _meta_or_none(client, green)
        if gmeta is None or gmeta.job is None or gmeta.job.blue != blue or gmeta.job.id != job.id:
            raise UpgradeError(f"collection '{green}' already exists and is not the green collection of job {job.id}; "
                               "choose another name with --into")
        return gmeta
    bmeta = bmeta if bmeta is not None else client.get_meta(blue)
    card = client.registry.verified_card(job.target_model)
    names = {v: green_vector(job, v) for v in store.vector_params(blue)}
    if card.ref in names.values():
        raise UpgradeError(f"collection '{blue}' already has a vector named '{card.ref}'")
    vectors = {names[v]: e for v, e in bmeta.vectors.items() if e.state != VectorState.RETIRED}
    vectors[card.ref] = VectorEntry.for_card(card, state=VectorState.FILLING)
    gjob = JobState(id=job.id, source=names[job.source], source_model=job.source_model, target=card.ref,
                    target_model=card.ref, target_fingerprint=card.fingerprint, strategy=job.strategy,
                    converter=job.converter, priority=job.priority, image_field=job.image_field, phase=Phase.RUNNING,
                    layout=Layout.BLUE_GREEN, blue=blue, alias=job.alias)
    gmeta = CompatMeta(vectors=vectors, read=names[bmeta.read], write=[names[w] for w in bmeta.write],
                       edges=list(bmeta.edges), job=gjob)
    store.create_like(green, blue, names, {card.ref: (card.dim, card.distance)}, metadata={META_KEY: gmeta.to_dict()})
    log.info("created green collection %s for job %s (%s)", green, job.id, ", ".join(f"{k or '<unnamed>'}->{v}"
                                                                                     for k, v in names.items()))
    return gmeta


def _meta_or_none(client: CompatClient, name: str) -> CompatMeta | None:
    try:
        return client.get_meta(name)
    except Exception:  # unmanaged or unreadable: not ours either way
        return None


def check_alias(client: CompatClient, alias: str | None, blue: str, *, create: bool) -> str:
    """The alias to switch: it must point at ``blue`` (created when ``create`` and absent).

    Raises:
        UpgradeError: no alias, or one that points elsewhere.
    """
    store = client.store
    if alias is None:
        have = store.aliases_of(blue)
        if len(have) == 1:
            return have[0]
        raise UpgradeError(
            f"a blue-green upgrade switches an alias, and collection '{blue}' has "
            + (f"several ({', '.join(have)}): name one with --alias" if have else
               f"none: applications that query '{blue}' by its own name cannot be switched (Qdrant cannot rename a "
               f"collection). Pass --alias NAME (created now, pointing at '{blue}') and point the applications at it")
        )
    target = store.aliases().get(alias)
    if target is None:
        if store.exists(alias):
            raise UpgradeError(f"'{alias}' is a collection, not an alias; choose another alias name")
        if not create:
            raise UpgradeError(f"alias '{alias}' does not exist (it is created by 'upgrade run')")
        store.point_alias(alias, blue)
        log.info("created alias %s -> %s: point applications at it", alias, blue)
        return alias
    if target != blue:
        raise UpgradeError(f"alias '{alias}' points at '{target}', not at '{blue}'")
    return alias


def start(client: CompatClient, blue: str, job: JobState, *, owner: str, ttl: float, meta: CompatMeta) -> None:
    """Record the job in blue, with this run's lock, naming green *before* it exists, so a crash leaves nothing
    unnamed (``meta``: blue's block as the caller just read it); :func:`run` then creates green."""
    job.lock = Lock(owner, time.time() + ttl)
    meta.job = job
    client.put_meta(blue, meta)


def resume_blue(client: CompatClient, blue: str, owner: str, ttl: float, meta: CompatMeta | None = None, *,
                held: bool = False) -> tuple[JobState, CompatMeta]:
    """Take blue's job lock for this run (``held``: :func:`start` just recorded it with the lock), make sure green
    exists, then mirror blue's writes into it and mark the job running, in one write. Returns blue's job and
    green's block. ``meta``: blue's block as the caller just read it (read here when None)."""
    meta = meta if meta is not None else client.get_meta(blue)
    job = meta.job
    assert job is not None and job.green
    check_lock(job, owner)
    if not held:
        job.lock = Lock(owner, time.time() + ttl)
        meta.job = job
        client.put_meta(blue, meta)
    meta = client.get_meta(blue)  # verify we hold it (two starters racing on a server: the later write wins)
    job = meta.job
    if job is None or job.lock is None or job.lock.owner != owner:
        raise JobLockedError(f"upgrade job {job.id if job else '?'} was taken by another process while starting")
    assert job.green
    gmeta = create_green(client, blue, job, meta)
    if meta.mirror != job.green or job.phase != Phase.RUNNING:
        meta.mirror = job.green
        advance(job, Phase.RUNNING, blue)
        job.updated = time.time()
        client.put_meta(blue, meta)
    return job, gmeta


def set_phase(client: CompatClient, coll: str, phase: Phase, *, hold: Lock | None | bool = False,
              counts: dict[str, int] | None = None) -> JobState:
    """Advance ``coll``'s job to ``phase`` (and set its lock when ``hold`` is not False); returns the job written."""
    meta = client.get_meta(coll)
    assert meta.job is not None
    advance(meta.job, phase, coll)
    if hold is not False:
        meta.job.lock = hold  # type: ignore[assignment]
    if counts is not None:
        meta.job.counts = dict(counts)
    meta.job.updated = time.time()
    client.put_meta(coll, meta)
    return meta.job


# ----------------------------------------------------------------------------------------------- lifecycle
def cutover(client: CompatClient, name: str, *, allow_partial: bool, dry_run: bool, grace: float,
            owner: str) -> CutoverResult:
    """Blue-green cutover (see the module docstring): both announce, grace, complete + in sync, switch."""
    blue, green, bjob, gjob = pair(client, name)
    if gjob is None:
        raise UpgradeError(f"job {bjob.id}: green collection '{green}' does not exist yet; run 'upgrade run' first")
    alias = bjob.alias
    if not alias:
        raise UpgradeError(f"job {bjob.id} names no alias to switch; applications must query through an alias")
    if not client.store.exists(blue):
        raise UpgradeError(f"job {bjob.id} was cleaned up: '{blue}' is gone and '{alias}' points at '{green}'")
    check_lock(bjob, owner)
    if gjob.phase == Phase.CUT_OVER and client.store.resolve(alias) == green:
        if bjob.phase != Phase.CUT_OVER:
            set_phase(client, blue, Phase.CUT_OVER)
        return CutoverResult(collection=green, read=gjob.target, source=gjob.source, target=gjob.target, already=True,
                             alias=alias, previous=blue)
    mirror = Mirror(client, blue, green, bjob)

    def in_sync() -> None:
        n = mirror.differences()
        if n:
            raise UpgradeError(f"cutover refused: {n} point(s) differ between '{blue}' and '{green}' (written outside "
                               "qdrant-compat, or mid-write); run 'upgrade run' to sync them, then cut over again")

    check_alias_at(client, alias, blue, "cutover")
    if dry_run:
        in_sync()
        out = cutover_in_place(client, green, allow_partial=allow_partial, dry_run=True, grace=0, owner=owner)
        out.alias, out.previous = alias, blue
        return out
    previous = bjob.phase if bjob.phase != Phase.CUTTING_OVER else Phase.FILLED
    set_phase(client, blue, Phase.CUTTING_OVER, hold=cutover_lock(owner, 2 * grace))  # both grace periods
    try:
        if gjob.phase != Phase.CUT_OVER:
            out = cutover_in_place(client, green, allow_partial=allow_partial, dry_run=False, grace=grace, owner=owner,
                                   extra_check=in_sync)
        else:  # a cutover that died after switching green's metadata: the alias is all that is left
            out = CutoverResult(collection=green, read=gjob.target, source=gjob.source, target=gjob.target)
    except BaseException:
        set_phase(client, blue, previous, hold=None)
        raise
    # green serves; it mirrors back into blue when the new model can write blue's vector (a rollback loses nothing)
    gmeta = client.get_meta(green)
    gmeta.mirror = blue if _reaches(client, gjob.target_model, blue) else None
    client.put_meta(green, gmeta)
    # compare again just before the switch; refused here, green's metadata is already switched and the next
    # 'cutover' finishes with the alias alone (the case above)
    check_alias_at(client, alias, blue, "cutover")
    client.store.point_alias(alias, green)  # the switch applications see: one request
    # a write that resolved the alias to blue just before the switch must still reach green: blue keeps
    # mirroring for the grace period
    time.sleep(max(0.0, grace))
    bmeta = client.get_meta(blue)
    bmeta.mirror = None
    assert bmeta.job is not None
    advance(bmeta.job, Phase.CUT_OVER, blue)
    bmeta.job.lock = None
    client.put_meta(blue, bmeta)
    log.info("cut over alias %s from %s to %s", alias, blue, green)
    out.alias, out.previous, out.collection = alias, blue, green
    out.source_kept_in_sync = gmeta.mirror is not None
    return out


def check_alias_at(client: CompatClient, alias: str, expected: str, doing: str) -> None:
    """Compare before switching: refuse when ``alias`` no longer points at ``expected`` (someone re-pointed or
    dropped it by hand), rather than overwrite an operator's choice.

    Raises:
        UpgradeError: naming where it points now and how to go on.
    """
    where = client.store.aliases().get(alias)
    if where == expected:
        return
    now = f"points at '{where}'" if where else "no longer exists"
    raise UpgradeError(f"{doing} refused: alias '{alias}' {now}, not at '{expected}' where this upgrade left it (changed "
                       f"by hand?); nothing was switched. If that is intended, point it back with 'qdrant-compat "
                       f"collection alias {alias} {expected}' and run the command again")


def _reaches(client: CompatClient, model: str, coll: str) -> bool:
    """Can ``model`` write every vector ``coll`` takes new points in? Asked of the collection as it serves, without
    its job: during a cutover the job is ``cutting_over``, where every write that cannot fill the target is refused,
    which says nothing of what ``coll`` takes once the switch is made."""
    try:
        card = client.registry.verified_card(model)
        meta = dataclasses.replace(client.get_meta(coll), job=None)
        write_routes(card, client.with_model_edges(meta, card), coll)
    except Exception:  # no route (or the model is gone): not kept in sync
        return False
    return True


def rollback(client: CompatClient, name: str, *, dry_run: bool, owner: str, grace: float = 2.0) -> RollbackResult:
    """Point the alias back at blue, once blue holds everything green holds. Blue's job is held for the step (a run
    or a cutover started meanwhile is refused) and let go with its last write."""
    blue, green, bjob, gjob = pair(client, name)
    if not client.store.exists(blue):
        rec = gjob.cleanup if gjob is not None else None
        raise UpgradeError(f"cannot roll back: '{blue}' was dropped by cleanup"
                           + (f"; restore its backup ({rec.backup}) into a new collection" if rec else ""))
    check_lock(bjob, owner)
    if dry_run:
        return _rollback_held(client, blue, green, bjob, gjob, dry_run=True, owner=owner, grace=grace)
    bjob = job_of(hold(client, blue, client.get_meta(blue), owner, ROLLBACK_LOCK_S), blue)
    try:
        out = _rollback_held(client, blue, green, bjob, gjob, dry_run=False, owner=owner, grace=grace)
    except BaseException:
        release(client, blue, owner)
        raise
    set_phase(client, blue, job_of(client.get_meta(blue), blue).phase, hold=None)  # the step's last write
    return out


def _rollback_held(client: CompatClient, blue: str, green: str, bjob: JobState, gjob: JobState | None, *,
                   dry_run: bool, owner: str, grace: float) -> RollbackResult:
    alias = bjob.alias
    if bjob.phase == Phase.CUTTING_OVER and gjob is not None and (not alias or client.store.resolve(alias) == blue):
        return _undo_interrupted_cutover(client, blue, green, bjob, gjob, dry_run=dry_run, owner=owner)
    if gjob is None or gjob.phase != Phase.CUT_OVER:
        raise UpgradeError(f"nothing to roll back: job {bjob.id} is '{bjob.phase}' and alias '{alias}' still points at "
                           f"'{client.store.resolve(alias) if alias else blue}'")
    n = Mirror(client, blue, green, bjob).differences(reverse=True)
    if n:
        raise UpgradeError(f"cannot roll back: {n} point(s) written to '{green}' since cutover are missing or different "
                           f"in '{blue}' ({gjob.target_model} cannot write '{bjob.source}'); re-run an upgrade towards "
                           f"{bjob.source_model} for them first")
    out = RollbackResult(collection=blue, read=bjob.source, dry_run=dry_run, alias=alias)
    if alias:
        check_alias_at(client, alias, green, "rollback")
    if dry_run:
        return out
    rollback_in_place(client, green, dry_run=False, owner=owner)  # green: old vector read again, new one filling
    bmeta = client.get_meta(blue)
    bmeta.mirror = green  # keep green in sync for a later cutover
    advance(job_of(bmeta, blue), Phase.ROLLED_BACK, blue)
    client.put_meta(blue, bmeta)
    if alias:
        client.store.point_alias(alias, blue)
        time.sleep(max(0.0, grace))  # writes that resolved the alias to green just before keep reaching blue
    gmeta = client.get_meta(green)
    gmeta.mirror = None
    client.put_meta(green, gmeta)
    log.info("rolled alias %s back from %s to %s", alias, green, blue)
    return out


def _undo_interrupted_cutover(client: CompatClient, blue: str, green: str, bjob: JobState, gjob: JobState, *,
                              dry_run: bool, owner: str) -> RollbackResult:
    """A cutover killed before the alias switch (SIGKILL, power loss): applications still see blue, but blue is
    ``cutting_over`` (writes refused) and green may have switched its own metadata. Put both back as they were
    before the cutover: green filled (or rolled back, if it had switched), blue filled and still mirroring."""
    out = RollbackResult(collection=blue, read=bjob.source, dry_run=dry_run, alias=bjob.alias)
    if dry_run:
        return out
    if gjob.phase == Phase.CUT_OVER:
        rollback_in_place(client, green, dry_run=False, owner=owner)
    elif gjob.phase == Phase.CUTTING_OVER:
        set_phase(client, green, Phase.FILLED)
    gmeta = client.get_meta(green)
    gmeta.mirror = None
    client.put_meta(green, gmeta)
    set_phase(client, blue, Phase.ROLLED_BACK if gjob.phase == Phase.CUT_OVER else Phase.FILLED)
    log.info("undid the interrupted cutover of %s -> %s: alias %s still points at %s", blue, green, bjob.alias, blue)
    return out


def _check_nothing_only_in_blue(client: CompatClient, blue: str, green: str, gjob: JobState) -> None:
    """Count and compare before dropping blue: every blue point must be in green, and every green point must hold
    the new vector; otherwise refuse with the counts (such points were written around qdrant-compat)."""
    from qdrant_compat.store import lacks_vector

    store, missing = client.store, 0
    for page in store.scroll_pages(blue, batch=1024, with_vectors=False, with_payload=False):
        ids = [r.id for r in page]
        have = {r.id for r in store.retrieve(green, ids, with_vectors=False, with_payload=False)}
        missing += sum(1 for i in ids if i not in have)
    without = store.count(green, lacks_vector(gjob.target))
    if missing or without:
        raise UpgradeError(
            f"cleanup refused: {missing} point(s) of '{blue}' are not in '{green}' and {without} point(s) of '{green}' "
            f"lack '{gjob.target}' (written around qdrant-compat, e.g. with plain qdrant-client, after the cutover); "
            f"dropping '{blue}' would keep them only in the backup. Bring them over first: 'upgrade rollback "
            f"{gjob.alias or blue}', 'upgrade run {gjob.alias or blue}', 'upgrade cutover {gjob.alias or blue}', then "
            "clean up. Nothing was dropped")


def cleanup(client: CompatClient, name: str, *, yes: bool, backup_dir: Any, dry_run: bool, owner: str) -> CleanupResult:
    """Drop the blue collection after cutover, backed up first; journaled in green's job, which is held for the step
    (a rollback or a run started meanwhile is refused) and let go with its last write."""
    blue, green, bjob, gjob = pair(client, name)
    if gjob is None:
        raise UpgradeError(f"cleanup needs a cut-over job; green collection '{green}' does not exist")
    check_lock(gjob, owner)
    if gjob.phase == Phase.CLEANED:
        return CleanupResult(collection=green, drops=blue, backup=gjob.cleanup.backup if gjob.cleanup else None,
                             resumed=True, drops_collection=True)
    if gjob.phase != Phase.CUT_OVER or (gjob.alias and client.store.resolve(gjob.alias) != green):
        raise UpgradeError(f"cleanup needs a cut-over job; job {gjob.id} is '{bjob.phase}' (alias "
                           f"'{gjob.alias}' -> '{client.store.resolve(gjob.alias or blue)}')")
    out = CleanupResult(collection=green, drops=blue, backup=gjob.cleanup.backup if gjob.cleanup else None,
                        resumed=gjob.cleanup is not None, dry_run=dry_run, drops_collection=True)
    if dry_run:
        return out
    if not yes:
        raise UpgradeError(f"cleanup drops collection '{blue}' for good; pass --yes (a backup is made first)")
    gmeta = hold(client, green, client.get_meta(green), owner, CLEANUP_LOCK_S)
    try:
        return _cleanup_held(client, blue, green, gmeta, backup_dir, out)
    except BaseException:
        release(client, green, owner)  # the journal (job.cleanup) stays: a rerun resumes the drop
        raise


def _cleanup_held(client: CompatClient, blue: str, green: str, gmeta: CompatMeta, backup_dir: Any,
                  out: CleanupResult) -> CleanupResult:
    gjob = job_of(gmeta, green)
    if unwritten_backup(gjob):
        gjob.cleanup, out.backup = None, None  # named but never written: plan it anew (in the folder given now)
    if gjob.cleanup is None:
        if not client.store.exists(blue):
            raise UpgradeError(f"collection '{blue}' is gone but job {gjob.id} recorded no backup of it")
        _check_nothing_only_in_blue(client, blue, green, gjob)
        # the backup, recorded before the drop; the embedded store's file is named in the journal first, so a
        # cleanup killed after writing it and before recording it does not make a second one
        target = client.store.backup_target(blue, backup_dir)
        if target is not None:
            gjob.cleanup = CleanupRecord(vector="", backup=target, collection=blue, made=False)
            client.put_meta(green, gmeta)
        made = client.store.backup(blue, backup_dir, target=target)
        gjob.cleanup, gmeta.mirror = CleanupRecord(vector="", backup=made, collection=blue), None  # green stops
        client.put_meta(green, gmeta)  # writing into blue
        out.backup = made
    elif not gjob.cleanup.made:  # killed after the file was complete, before it was recorded: it is the backup
        gjob.cleanup.made, gmeta.mirror = True, None
        client.put_meta(green, gmeta)
        out.backup = gjob.cleanup.backup
    if client.store.exists(blue):
        client.store.delete(blue)
    gmeta = client.get_meta(green)
    gjob = job_of(gmeta, green)
    assert gjob.cleanup is not None
    gjob.cleanup.dropped = True
    advance(gjob, Phase.CLEANED, green)
    gjob.lock = None
    client.put_meta(green, gmeta)
    log.info("dropped %s (backup %s); %s serves alias %s", blue, gjob.cleanup.backup, green, gjob.alias)
    return out


def remaining(client: CompatClient, blue: str, bjob: JobState) -> int:
    """Points of green without the new vector (before green exists: all of blue's)."""
    assert bjob.green
    if not client.store.exists(bjob.green):
        return client.store.count(blue)
    return client.store.count(bjob.green) - client.count_with_vector(bjob.green, bjob.target)


def run(client: CompatClient, blue: str, fill: FillOptions, meta: CompatMeta | None = None, *,
        held: bool = False) -> RunReport:
    """Sync blue into green, then fill green's new vector in place; blue's job follows green's phase.
    ``meta``, ``held``: see :func:`resume_blue`."""
    t0 = time.perf_counter()
    owner, lock_ttl = fill.owner, fill.lock_ttl
    bjob, gmeta = resume_blue(client, blue, owner, lock_ttl, meta, held=held)
    green = bjob.green
    assert green
    last = [time.monotonic()]
    try:
        gjob = gmeta.job
        assert gjob is not None
        if not gjob.phase.open:  # rolled back: a run catches green up again
            set_phase(client, green, Phase.RUNNING)

        def heartbeat() -> None:  # renew blue's lock as the fill does green's (when due, not per page)
            if time.monotonic() - last[0] >= heartbeat_interval(lock_ttl):
                set_phase(client, blue, Phase.RUNNING, hold=Lock(owner, time.time() + lock_ttl))
                last[0] = time.monotonic()

        sync = Mirror(client, blue, green, bjob).sync(heartbeat=heartbeat)
        log.info("blue-green %s: synced %s -> %s (%d copied, %d replaced, %d deleted, %d still differ)", bjob.id, blue,
                 green, sync.copied, sync.replaced, sync.deleted, sync.differing)
        rep = fill_in_place(client, green, None, fill)
        assert rep.job is not None
        bjob = set_phase(client, blue, rep.job.phase if rep.job.phase != Phase.CUT_OVER else Phase.FILLED,
                         hold=None, counts=rep.job.counts)
    except BaseException:
        try:
            meta = client.get_meta(blue)
            if meta.job is not None and meta.job.lock is not None and meta.job.lock.owner == owner:
                set_phase(client, blue, meta.job.phase, hold=None)
        except Exception:  # pragma: no cover - best effort on the way out
            pass
        raise
    rep.collection = blue
    rep.job = bjob
    rep.sync = sync.to_dict()
    rep.notes.append(f"blue-green: '{green}' is filled beside '{blue}' (synced: {sync.copied} copied, {sync.replaced} "
                     f"replaced, {sync.deleted} deleted); 'upgrade cutover' switches alias '{bjob.alias}'")
    rep.seconds = time.perf_counter() - t0
    return rep


def status(client: CompatClient, name: str) -> StatusReport:
    """The report of green (where the new vector is filled; blue's before green exists), with ``blue_green`` saying
    which collection the alias serves."""
    blue, green, bjob, _ = pair(client, name)
    store = client.store
    extra = {"blue": blue, "green": green, "alias": bjob.alias,
             "alias_points_at": store.resolve(bjob.alias) if bjob.alias else None,
             "blue_exists": store.exists(blue), "green_exists": store.exists(green), "blue_phase": bjob.phase.value,
             "mirror": {c: client.get_meta(c).mirror for c in (blue, green) if store.exists(c)}}
    return collection_status(client, green if store.exists(green) else blue, blue_green=extra)


class BlueGreen:
    """The blue-green layout behind :class:`~qdrant_compat.upgrade.layouts.UpgradeLayout`."""

    kind = Layout.BLUE_GREEN

    def status(self, client: CompatClient, name: str) -> StatusReport:
        return status(client, name)

    def cutover(self, client: CompatClient, name: str, *, allow_partial: bool, dry_run: bool, grace: float,
                owner: str) -> CutoverResult:
        return cutover(client, name, allow_partial=allow_partial, dry_run=dry_run, grace=grace, owner=owner)

    def rollback(self, client: CompatClient, name: str, *, dry_run: bool, grace: float, owner: str) -> RollbackResult:
        return rollback(client, name, dry_run=dry_run, owner=owner, grace=grace)

    def cleanup(self, client: CompatClient, name: str, *, yes: bool, backup_dir: Any, dry_run: bool,
                owner: str) -> CleanupResult:
        return cleanup(client, name, yes=yes, backup_dir=backup_dir, dry_run=dry_run, owner=owner)

    def resume(self, client: CompatClient, collection: str, meta: CompatMeta, fill: FillOptions, *,
               target_ref: str | None,
               strategy: Strategy | str | None, dry_run: bool) -> RunReport | None:
        """Sync and fill the recorded pair again (open or rolled back, same target); otherwise what the collection's
        own job allows in place (a green whose blue is gone), or None."""
        job = meta.job
        if job is not None and (target_ref is None or target_ref == job.target_model):
            blue = job.blue if job.blue else collection
            bmeta = meta if blue == collection else (client.get_meta(blue) if client.store.exists(blue) else None)
            bjob = bmeta.job if bmeta is not None else None
            refuse_during_cutover(bjob, blue)
            if bmeta is not None and bjob is not None and bjob.green and (bjob.phase.open or bjob.phase == Phase.ROLLED_BACK):
                if dry_run:
                    return RunReport(blue, job=bjob, dry_run=True, remaining=remaining(client, blue, bjob))
                return run(client, blue, fill, bmeta)
        return InPlace().resume(client, collection, meta, fill, target_ref=target_ref, strategy=strategy, dry_run=dry_run)

    def start(self, client: CompatClient, collection: str, plan: UpgradePlan, fill: FillOptions, *,
              priority: Priority | str, image_field: str, dry_run: bool, meta: CompatMeta) -> RunReport:
        """A new job from ``plan``: recorded in blue, green created and mirrored, then filled."""
        if dry_run:
            # refuse what the real run would refuse (no alias to switch, an alias name taken by a collection);
            # an alias the run would create is fine
            if plan.alias is None or plan.alias not in client.store.aliases():
                if plan.alias is None or client.store.exists(plan.alias):
                    check_alias(client, plan.alias, collection, create=False)
            return RunReport(collection, job=None, plan=plan.to_dict(), dry_run=True,
                             remaining=plan.points - plan.already_filled)
        if client.store.exists(plan.green or ""):  # a new job's green must be new: refuse before recording anything
            raise UpgradeError(f"collection '{plan.green}' already exists and is not the green collection of a job "
                               f"of '{collection}'; choose another name with --into (nothing was recorded)")
        job = meta.job
        if job is not None:
            check_lock(job, fill.owner)
            if job.phase.open:
                raise UpgradeError(f"collection '{collection}' has an unfinished upgrade to {job.target_model} "
                                   f"({job.phase}); finish it or roll it back first")
        check_alias(client, plan.alias, collection, create=True)
        card = client.registry.verified_card(plan.target_model)
        bjob = plan.new_job(card.fingerprint, priority=priority, image_field=image_field, phase=Phase.PLANNED,
                            layout=Layout.BLUE_GREEN, green=plan.green, alias=plan.alias)
        start(client, collection, bjob, owner=fill.owner, ttl=fill.lock_ttl, meta=meta)
        return run(client, collection, fill, meta, held=True)


__all__ = ["BlueGreen", "Mirror", "SyncReport", "check_alias", "cleanup", "create_green", "cutover", "green_name",
           "green_vector", "is_blue_green", "pair", "rollback", "run", "start", "status"]
