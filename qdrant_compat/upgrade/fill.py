"""Filling the target vector of one collection in batches, resumable after any interruption (what ``upgrade
run`` does in place, and on a blue-green job's green collection).

Per-point progress is the point itself: the target vector and, for re-extracted points, a provenance
mark in the payload field ``_qdrant_compat.<vector>``. Conversion marks a point
done by writing its target vector (one write per point); extraction also records ``extracted`` (or
``missing``/``failed``) in the payload field, after the vector, so a crash in between only means the batch
is redone (writes are idempotent). Nothing is ever deleted; payloads are only extended by the provenance field.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.client import PROVENANCE_KEY, CompatClient
from qdrant_compat.data.images import ImageReader, ImageRefs
from qdrant_compat.engines.base import FAILED, MISSING, OK, STATUSES, UNREACHABLE, Engine
from qdrant_compat.engines.local import LocalEngine
from qdrant_compat.enums import Count, Layout, Mark, Phase, Priority, Relation, Strategy, VectorState
from qdrant_compat.errors import InvalidArgumentError, JobLockedError, UpgradeError
from qdrant_compat.metadata import CompatMeta, Edge, VectorEntry
from qdrant_compat.results import Result
from qdrant_compat.store import MIN_SERVER_FOR_NAMED_VECTORS, mark_is, mark_not_in, record_vector
from qdrant_compat.upgrade.jobs import advance
from qdrant_compat.upgrade.plan import UpgradePlan, bct_evidence, check_source_fingerprint, plan_upgrade
from qdrant_compat.upgrade.state import DEFAULT_LOCK_TTL, JobState, Lock, check_lock, make_owner, provenance_key
from qdrant_compat.upgrade.writes import CHANGED, FillTarget, Written, seen_key, write_extracted, write_vectors

log = logging.getLogger(__name__)
DEFAULT_IMAGE_FIELD = "image_path"
ProgressFn = Callable[[int, int], None]
DONE_MARKS = (Mark.EXTRACTED.value, Mark.MISSING.value, Mark.FAILED.value, Mark.UNREACHABLE.value)  # settled
RETRY_MARKS = (Mark.EXTRACTED.value, Mark.MISSING.value, Mark.FAILED.value)  # a plain rerun retries 'unreachable' 
# a run stops when this many batches in a row (of at least MIN_BATCH points) could not reach this share of
# their images: the image server is down, and going on would only mark the whole gallery failed
BREAKER_BATCHES, BREAKER_SHARE, BREAKER_MIN_BATCH = 3, 0.9, 4
HEARTBEAT_S = 5.0  # seconds between a run's job-block writes (renewing its lock); see _Session
SCAN_PAGE = 1024  # points per page of the backfill's scan (scored, then their vectors dropped)


class Queued(NamedTuple):
    """A point waiting to be re-extracted: all the backfill keeps of it (a scrolled record costs 10x more)."""

    id: Any
    payload: dict[str, Any] | None


@dataclass
class RunReport(Result):
    """``upgrade run``: what this run did and what is left."""

    collection: str
    job: JobState | None
    processed: int = 0
    remaining: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    plan: dict[str, Any] | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # busy time per backfill stage (read/embed/write)
    sync: dict[str, int] | None = None  # blue-green: this run's blue -> green sync


def heartbeat_interval(ttl: float) -> float:
    """Seconds between a run's lock renewals: :data:`HEARTBEAT_S`, or a quarter of the lock's time if shorter."""
    return min(HEARTBEAT_S, ttl / 4)


class _Session:
    """Holds the job lock and keeps the job block current: a heartbeat after a batch renews the lock and stores the
    counts when :data:`HEARTBEAT_S` seconds (a quarter of the lock's time at most) have passed since the last
    write, so a fast run costs no metadata round trip per batch and a live one never lets its lock expire."""

    def __init__(self, client: CompatClient, collection: str, owner: str, ttl: float) -> None:
        self.client, self.collection, self.owner, self.ttl = client, collection, owner, ttl
        self.interval = heartbeat_interval(ttl)
        self.last = time.monotonic()

    def load(self) -> tuple[CompatMeta, JobState]:
        meta = self.client.get_meta(self.collection)
        if meta.job is None:
            raise UpgradeError(f"collection '{self.collection}' has no upgrade job")
        return meta, meta.job

    def save(self, meta: CompatMeta, job: JobState, *, hold: bool = True) -> None:
        job.lock = Lock(self.owner, time.time() + self.ttl) if hold else None
        job.updated = time.time()
        meta.job = job
        self.client.put_meta(self.collection, meta)
        self.last = time.monotonic()

    def heartbeat(self, job: JobState, *, force: bool = False) -> None:
        """Renew the lock and store ``job``'s counts, errors and phase (when due, or ``force``).

        Raises:
            JobLockedError: another process holds the lock now (this one stalled past it): stop, write nothing."""
        if not force and time.monotonic() - self.last < self.interval:
            return
        meta, current = self.load()
        if current.lock is not None and current.lock.owner != self.owner:
            raise JobLockedError(f"upgrade job {job.id}: lock was taken over by {current.lock.owner}; stopping")
        current.counts = job.counts
        current.errors = job.errors
        advance(current, job.phase, self.collection)
        self.save(meta, current)


def _vec(rec: Any, name: str) -> list[float]:
    v = record_vector(rec, name)
    if v is None:
        raise UpgradeError(f"point {rec.id} has no '{name}' vector")
    return v


def check_server_supports_named_vectors(client: CompatClient) -> None:
    """Adding a named vector to an existing collection needs Qdrant >= 1.18 (embedded mode: always).

    Raises:
        UpgradeError: an older server, with what to do instead.
    """
    caps = client.store.capabilities()
    if not caps.named_vector_changes:
        raise UpgradeError(
            f"this Qdrant server is {caps.version}; adding the new model's vector in place needs >= "
            f"{'.'.join(map(str, MIN_SERVER_FOR_NAMED_VECTORS))}. Upgrade the server, or copy the collection "
            "into a new one created with both vectors and switch an alias (not automated here); 'adopt' "
            "(a measured bct edge) needs no new vector and works on any version"
        )


def start_job(client: CompatClient, collection: str, plan: UpgradePlan, *, priority: str, image_field: str,
              owner: str, ttl: float, meta: CompatMeta | None = None) -> JobState:
    """Record the job, create the target vector (state ``filling``) or, for adopt, the bct edge (``meta``: the
    block the caller just read; read here when None)."""
    meta = meta if meta is not None else client.get_meta(collection)
    if meta.job is not None:
        existing = meta.job
        check_lock(existing, owner)
        if existing.phase not in (Phase.CLEANED, Phase.ROLLED_BACK) and existing.target_model != plan.target_model:
            raise UpgradeError(
                f"collection '{collection}' has an unfinished upgrade to {existing.target_model} ({existing.phase}); "
                "finish it (upgrade run / cutover) or roll it back first"
            )
    card = client.registry.verified_card(plan.target_model)
    job = plan.new_job(card.fingerprint, priority=priority, image_field=image_field, phase=Phase.RUNNING)
    if plan.strategy == Strategy.ADOPT:
        src_card = client.registry.verified_card(plan.source_model)
        ev = bct_evidence(card, src_card, client.registry) or {}
        meta.edges = [e for e in meta.edges if not (e.query == card.ref and e.stored == src_card.ref)] + [
            Edge(query=card.ref, query_fingerprint=card.fingerprint, stored=src_card.ref,
                 stored_fingerprint=src_card.fingerprint, relation=Relation.BCT, evidence=ev)]
        advance(job, Phase.FILLED, collection)
    elif plan.target not in meta.vectors or meta.vectors[plan.target].state == VectorState.RETIRED:
        check_server_supports_named_vectors(client)
        if plan.target not in client.store.vector_params(collection):
            client.store.add_vector(collection, plan.target, card.dim, card.distance)
        meta.vectors[plan.target] = VectorEntry.for_card(card, state=VectorState.FILLING)
    job.lock = Lock(owner, time.time() + ttl)
    meta.job = job
    meta.mirror = None  # a rolled-back blue-green job's new collection is no longer kept in sync
    client.put_meta(collection, meta)
    log.info("started upgrade job %s on %s: %s -> %s (%s)", job.id, collection, plan.source_model, plan.target_model,
             plan.strategy)
    return job


def _backfill_queue(client: CompatClient, collection: str, job: JobState, need: Callable[[Any], bool],
                    seed: int) -> tuple[list[Any], list[int]]:
    """The points to re-extract, and the order to take them in (indices into the list).

    One pass: the uncertainty score of each page is computed as it arrives, and only each point's id and the
    payload fields the writer needs (image reference, write stamp) are kept, not the scrolled record with its
    vectors: ~0.45 kB a point instead of ~5 kB with a 128-d vector (``benchmarks/s8_ray_scaling.py``)."""
    from qdrant_compat.upgrade.priority import backfill_order, uncertainty_scores

    kind, w = job.priority, None
    if kind == Priority.UNCERTAINTY and job.source not in client.store.vector_params(collection):
        kind = Priority.ID  # cleaned up: no old vector left to score
    if kind == Priority.UNCERTAINTY:
        w = client.registry.get_model(job.source_model).classifier_weight()
        if w is None:
            log.warning("source model %s has no classifier: backfilling in id order", job.source_model)
            kind = Priority.ID
    recs: list[Any] = []
    scores: list[np.ndarray] = []
    for page in _pending(client, collection, job, need=need, payload=[job.image_field], batch=SCAN_PAGE,
                         vectors=w is not None):
        if w is not None:
            scores.append(uncertainty_scores(np.asarray([_vec(r, job.source) for r in page], np.float32), w))
        recs += [Queued(r.id, r.payload) for r in page]
    if w is None:
        return recs, [int(i) for i in backfill_order(kind, len(recs), seed=seed)]
    if not recs:
        return recs, []
    return recs, [int(i) for i in np.argsort(-np.concatenate(scores), kind="stable")]


def _pending(client: CompatClient, collection: str, job: JobState, *, need: Callable[[Any], bool],
             payload: list[str], batch: int, with_target: bool = False, vectors: bool = True) -> Iterator[list[Any]]:
    """Batches of the points ``need`` selects, in one pass over the collection.

    Selecting here rather than with a Qdrant filter keeps the pass linear on every backend (an embedded
    store evaluates filters point by point on every scroll call)."""
    names = [v for v in (job.source, job.target if with_target else None) if v is not None]  # "" is the unnamed vector
    out: list[Any] = []
    for rec in client.store.scroll_all(collection, batch=batch, with_vectors=(names or True) if vectors else False,
                                       with_payload=[PROVENANCE_KEY, *payload]):
        if need(rec):
            out.append(rec)
            if len(out) == batch:
                yield out
                out = []
    if out:
        yield out


def _provenance(rec: Any, target: str) -> str | None:
    return ((rec.payload or {}).get(PROVENANCE_KEY) or {}).get(provenance_key(target))


def _converted(client: CompatClient, job: JobState, batches: Iterator[list[Any]], engine: Engine,
               batch_size: int) -> Iterator[tuple[list[Any], np.ndarray]]:
    """(records, converted source vectors) per batch, as the engine returns them (in order)."""
    assert job.converter is not None
    for recs in _chunked(batches, engine.chunk, [-1]):
        src = np.asarray([_vec(r, job.source) for r in recs], dtype=np.float32)
        try:
            for out in engine.convert(src, registry_root=str(client.registry.root), converter=job.converter,
                                      batch_size=batch_size):
                yield [recs[int(i)] for i in out["i"]], np.asarray(out["out"], np.float32)
        except InvalidArgumentError as exc:
            raise UpgradeError(f"{exc}; nothing of this batch was written") from None


def _chunked(batches: Iterator[list[Any]], size: int, budget: list[int]) -> Iterator[list[Any]]:
    """Batches joined into chunks of about ``size`` points, taking at most ``budget[0]`` batches (-1: all)."""
    chunk: list[Any] = []
    for recs in batches:
        if budget[0] == 0:
            break
        chunk += recs
        budget[0] -= 1
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _convert_stage(client: CompatClient, collection: str, job: JobState, sess: _Session, batch_size: int,
                   progress: ProgressFn | None, budget: list[int], engine: Engine) -> int:
    if job.converter is None:
        raise UpgradeError(f"job {job.id} converts but names no converter")
    total = client.store.count(collection)
    done = 0
    # a point is converted once it holds the target vector; only extracted / missing / failed points carry a
    # provenance mark (one write per converted point, as fast as a raw rewrite)
    def need(r: Any) -> bool:
        return record_vector(r, job.target) is None

    pending = _pending(client, collection, job, need=need, payload=[], batch=batch_size, with_target=True)
    writes = engine.worker_writes(client.store, FillTarget(collection, job.target, job.target_model, job.image_field),
                                  sess.owner, sess.ttl)
    if writes is not None:  # the workers write; the scan and the job stay here
        for recs in _chunked(pending, engine.chunk, budget):
            src = np.asarray([_vec(r, job.source) for r in recs], dtype=np.float32)
            with client.store.released():
                for out in engine.convert(src, registry_root=str(client.registry.root), converter=job.converter,
                                          batch_size=batch_size, write=writes, ids=[r.id for r in recs]):
                    done += len(out["i"])
                    job.bump(Count.CONVERTED, len(out["i"]))
                    if progress:
                        progress(done, total)
            sess.heartbeat(job)
            log.info("convert %s: %d/%d points written", job.id, done, total)
        return done
    for recs, conv in _converted(client, job, pending, engine, batch_size):
        if budget[0] == 0:
            break
        write_vectors(client.store, collection, job.target, {r.id: o.tolist() for r, o in zip(recs, conv, strict=True)}, {})
        done += len(recs)
        job.bump(Count.CONVERTED, len(recs))
        sess.heartbeat(job)
        log.info("convert %s: %d/%d points written", job.id, done, total)
        budget[0] -= 1
        if progress:
            progress(done, total)
    return done


@dataclass
class _Prepared:
    """One batch as the writer takes it: the points by what became of their image, and the reasons."""

    batch: list[Any]
    ok_ids: list[Any]
    missing: list[Any]
    failed: list[Any]
    errors: list[str]
    unreachable: list[Any] = field(default_factory=list)  # the server did not answer (not a bad image)


def _from_engine(ordered: list[Any], out: dict[str, np.ndarray]) -> tuple[_Prepared, np.ndarray]:
    """An engine's result batch as the writer takes it (rows are positions in ``ordered``)."""
    batch = [ordered[int(i)] for i in out["i"]]
    status = [str(x) for x in out["status"]]
    ok = np.asarray([x == OK for x in status], bool)
    pick = {k: [r.id for r, x in zip(batch, status, strict=True) if x == k] for k in STATUSES}
    errors = [f"point {r.id}: {e}" for r, x, e in zip(batch, status, out["error"], strict=True) if x != OK]
    vecs = np.asarray(out["vec"], np.float32)[ok]
    return _Prepared(batch, pick[OK], pick[MISSING], pick[FAILED], errors, unreachable=pick[UNREACHABLE]), vecs


class _WriteKeys(Sequence[str]):
    """Per point, the JSON ``[id, write stamp, image reference]`` a write worker re-checks; made when a chunk
    asks for it, not held for the whole queue (~100 bytes a point: 1 GB for 10M)."""

    def __init__(self, ordered: list[Any], image_field: str) -> None:
        self.ordered, self.image_field = ordered, image_field

    def __len__(self) -> int:
        return len(self.ordered)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        r = self.ordered[i]
        return json.dumps([r.id, *seen_key(r.payload, self.image_field)])


def _reported(ordered: list[Any], out: dict[str, np.ndarray]) -> tuple[Written, list[str]]:
    """A batch the engine's workers wrote themselves, as :class:`Written` (rows are positions in ``ordered``)."""
    res = Written(marks={m.value: [] for m in (Mark.EXTRACTED, Mark.MISSING, Mark.FAILED, Mark.UNREACHABLE)})
    errors = []
    for i, mark, err in zip(out["i"], out["mark"], out["error"], strict=True):
        pid = ordered[int(i)].id
        (res.changed if mark == CHANGED else res.marks[str(mark)]).append(pid)
        if err:
            errors.append(f"point {pid}: {err}")
    return res, errors


def _backfill_stage(client: CompatClient, collection: str, job: JobState, sess: _Session, batch_size: int,
                    progress: ProgressFn | None, budget: list[int], seed: int, retry_missing: bool,
                    reader: ImageReader, stages: dict[str, float], engine: Engine) -> int:
    """Re-extract pending points: the engine reads, decodes and embeds them in priority order (the local
    engine in threads here, Ray Data there) and this thread checks, writes, marks and heartbeats each batch it
    hands back, in order; or, when the engine's workers write themselves, folds their reports into the job."""
    skip = (Mark.EXTRACTED.value,) if retry_missing else RETRY_MARKS  # --retry-missing: every unfilled point
    recs, order = _backfill_queue(client, collection, job, lambda r: _provenance(r, job.target) not in skip, seed)
    batches = [[recs[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    if budget[0] >= 0:
        batches = batches[: budget[0]]
    done = [0]
    for k in ("read", "embed", "write"):
        stages.setdefault(k, 0.0)

    target = FillTarget(collection, job.target, job.target_model, job.image_field)

    def account(n: int, res: Written, errors: list[str]) -> None:
        """Fold one written batch of ``n`` points into the job (the caller heartbeats)."""
        for e in errors:
            job.add_error(e)
        for pid, e in res.errors.items():
            job.add_error(f"point {pid}: {e}")
        if res.changed:  # a re-written point lost its mark: the next pass takes it with its new image
            log.info("backfill %s: %d point(s) changed or deleted while being re-extracted: left for the next pass",
                     job.id, len(res.changed))
            job.bump(Count.CHANGED_DURING_RUN, len(res.changed))
        for mark, ids in res.marks.items():
            job.bump(Mark(mark), len(ids))
        done[0] += n
        budget[0] -= 1
        log.info("backfill %s: %d/%d points written", job.id, done[0], len(order))

    def report() -> None:
        if progress:
            progress(done[0], len(order))

    streak = [0]

    def breaker(prep: _Prepared) -> None:
        """Stop the run when the images stop answering (several batches in a row): a resumable job, exit 1."""
        n = len(prep.batch)
        streak[0] = streak[0] + 1 if n >= BREAKER_MIN_BATCH and len(prep.unreachable) >= BREAKER_SHARE * n else 0
        if streak[0] >= BREAKER_BATCHES:
            example = next((e for e in prep.errors if "could not be read" in e), prep.errors[0] if prep.errors else "")
            raise UpgradeError(
                f"stopped: the images stopped answering ({len(prep.unreachable)} of the last batch's {n} and most of the "
                f"{BREAKER_BATCHES - 1} before it could not be fetched after retries; e.g. {example}); nothing is lost: "
                "run 'upgrade run' again once the image server answers: the unreachable points are tried again")

    def write(prep: _Prepared, vecs: np.ndarray) -> None:
        breaker(prep)
        t0 = time.perf_counter()
        seen = {r.id: seen_key(r.payload, job.image_field) for r in prep.batch}
        res = write_extracted(client.store, target, seen, prep.ok_ids, vecs, prep.missing, prep.failed,
                              prep.unreachable)
        account(len(prep.batch), res, prep.errors)
        sess.heartbeat(job)
        stages["write"] += time.perf_counter() - t0
        report()

    ordered = [r for b in batches for r in b]
    refs = [(r.payload or {}).get(job.image_field) for r in ordered]
    stages.setdefault("engine_wait", 0.0)
    kw: dict[str, Any] = {"registry_root": str(client.registry.root), "model": job.target_model,
                          "batch_size": batch_size, "reader": reader}
    writes = engine.worker_writes(client.store, target, sess.owner, sess.ttl)
    if writes is not None:  # the workers write (and keep the lock); this thread folds their reports into the job
        keys = _WriteKeys(ordered, job.image_field)
        left = budget[0] - len(batches) if budget[0] >= 0 else -1
        t_wait = time.perf_counter()
        with client.store.released():
            for out in engine.extract(refs, **kw, write=writes, keys=keys):
                account(len(out["i"]), *_reported(ordered, out))
                if client.store.local_path is None:  # a server stays reachable: keep the job's counts current
                    sess.heartbeat(job)
                report()
        stages["engine_wait"] += time.perf_counter() - t_wait  # embedding and writing both happen there
        budget[0] = left  # the engine's batches need not line up with ours; all of ours were handed over
        sess.heartbeat(job)
        return done[0]
    results = engine.extract(refs, **kw)
    try:
        t_wait = time.perf_counter()
        for out in results:
            stages["engine_wait"] += time.perf_counter() - t_wait
            for stage in ("read", "embed"):  # the local engine times its own stages
                stages[stage] += float(out.get(f"{stage}_s", 0.0))
            write(*_from_engine(ordered, out))
            if budget[0] == 0:
                break
            t_wait = time.perf_counter()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # stop reading ahead now, not when the generator is collected
    return done[0]


def _counts_from_store(client: CompatClient, collection: str, job: JobState, filled: int) -> dict[str, int]:
    """The job's counters, recounted from the points (exact after crashes and redone batches, unlike sums)."""
    key = f"{PROVENANCE_KEY}.{provenance_key(job.target)}"
    counts = {m.value: client.store.count(collection, mark_is(key, m.value))
              for m in (Mark.EXTRACTED, Mark.MISSING, Mark.FAILED, Mark.UNREACHABLE)}
    if job.strategy.converts:
        counts[Count.CONVERTED.value] = filled - counts[Mark.EXTRACTED.value]
    else:
        counts[Count.UNMARKED.value] = filled - counts[Mark.EXTRACTED.value]
    return counts


def _activate_if_kept_in_sync(client: CompatClient, meta: CompatMeta, job: JobState) -> None:
    """A complete target vector serves its model's queries before cutover when writes keep it complete:
    the source model reaches it (an old->new converter), so every new point gets it too."""
    from qdrant_compat.routing import candidate_routes

    src = client.registry.verified_card(job.source_model)
    if any(r.vector == job.target for r in candidate_routes(src, client.with_model_edges(meta, src))):
        meta.vectors[job.target].state = VectorState.ACTIVE
        if job.target not in meta.write:
            meta.write.append(job.target)
        log.info("vector %s is complete and kept in sync by %s's writes: it serves queries now", job.target, src.ref)


def refuse_during_cutover(job: JobState | None, collection: str) -> None:
    """A run must not resume a job a cutover holds: its heartbeat would write 'running' over 'cutting_over'.

    Raises:
        UpgradeError: with what to do (wait, or rerun the cutover a killed one left behind, or roll back).
    """
    if job is not None and job.phase == Phase.CUTTING_OVER:
        raise UpgradeError(
            f"collection '{collection}' is cutting over to {job.target_model} (job {job.id}): a run cannot resume it "
            f"now. Wait for the cutover to finish; if it was killed, 'upgrade cutover {collection}' finishes it and "
            f"'upgrade rollback {collection}' undoes it")


def resumable(job: JobState | None, target_ref: str | None, strategy: Strategy | str | None) -> bool:
    """Whether a run for ``target_ref`` (None: whatever the job targets) and ``strategy`` continues the recorded
    job rather than starting one: the job is open for that target and strategy, or cut over and catching up."""
    return _after_cutover(job, target_ref, strategy) or (
        job is not None and job.phase.open and (target_ref is None or target_ref == job.target_model)
        and (strategy is None or Strategy.parse(strategy, "strategy") == job.strategy))


def _after_cutover(job: JobState | None, target_ref: str | None, strategy: Strategy | str | None) -> bool:
    """An in-place job already cut over (and not being cleaned up): its collection may hold points written since
    around qdrant-compat (plain qdrant-client, a writer slower than the grace period) with only the old vector;
    a run for the same target fills them and leaves the job cut over. After cleanup (a raw write landed between
    cleanup's check and its drop) only re-extraction from images can fill them."""
    return (job is not None and job.layout != Layout.BLUE_GREEN and job.strategy != Strategy.ADOPT
            and ((job.phase == Phase.CUT_OVER and job.cleanup is None)
                 or (job.phase == Phase.CLEANED and job.strategy.extracts))  # the old vector is gone: from images only
            and (target_ref is None or target_ref == job.target_model)
            and (strategy is None or Strategy.parse(strategy, "strategy") == job.strategy))


@dataclass
class FillOptions:
    """How a run fills: the options of :func:`run_upgrade` that both layouts pass down unchanged."""

    owner: str
    batch_size: int = 256
    progress: ProgressFn | None = None
    lock_ttl: float = DEFAULT_LOCK_TTL
    max_batches: int | None = None
    retry_missing: bool = False
    seed: int = 0
    images: ImageReader | None = None
    read_workers: int = 2  # the local engine's read threads (when ``engine`` is None)
    engine: Engine | None = None  # None: a LocalEngine(read_workers); or a RayEngine
    image_field: str | None = None  # given on a resume: replaces the job's (None: keep the job's)


def fill_in_place(client: CompatClient, collection: str, target: ModelCard | str | None, fill: FillOptions, *,
                  strategy: Strategy | str | None = None, converter: str | None = None,
                  priority: Priority | str = Priority.UNCERTAINTY, image_field: str | None = None,
                  dry_run: bool = False, plan: UpgradePlan | None = None, meta: CompatMeta | None = None) -> RunReport:
    """Start (from ``plan``) or resume the job of one collection whose new vector is filled in place: the run of
    the in-place layout, and of the blue-green layout on its green collection.

    ``meta`` is the collection's block as the caller just read it (read here when None). One run reads the block
    three times (that one, the check that it holds the lock, the last) and writes it twice (the lock, the end),
    plus one read and one write every :data:`HEARTBEAT_S` seconds of a longer run."""
    owner, batch_size, progress, lock_ttl = fill.owner, fill.batch_size, fill.progress, fill.lock_ttl
    max_batches, retry_missing, seed, images = fill.max_batches, fill.retry_missing, fill.seed, fill.images
    engine = fill.engine if fill.engine is not None else LocalEngine(fill.read_workers)
    t0 = time.perf_counter()
    owner = owner or make_owner()
    meta = meta if meta is not None else client.get_meta(collection)
    job = meta.job
    target_ref = client.card(target).ref if target is not None else None
    if target_ref is None or (job is not None and target_ref == job.target_model):
        refuse_during_cutover(job, collection)
    catch_up = _after_cutover(job, target_ref, strategy)
    started = False
    if not resumable(job, target_ref, strategy):
        if target is None:
            raise UpgradeError(f"collection '{collection}' has no upgrade job to resume; name the target model")
        plan = plan or plan_upgrade(client, collection, target, strategy=strategy, converter=converter,
                                    image_field=image_field or DEFAULT_IMAGE_FIELD, layout=Layout.IN_PLACE, meta=meta)
        if dry_run:
            return RunReport(collection, job=None, plan=plan.to_dict(), dry_run=True, remaining=plan.points - plan.already_filled)
        job = start_job(client, collection, plan, priority=priority, image_field=image_field or DEFAULT_IMAGE_FIELD,
                        owner=owner, ttl=lock_ttl, meta=meta)
        started = True
    else:
        assert job is not None
        if job.phase != Phase.CLEANED:  # cleaned up: the source vector and its entry are gone
            check_source_fingerprint(client, meta, collection, job.source)
        field_now = image_field or fill.image_field
        if field_now and field_now != job.image_field and not dry_run:
            log.info("job %s: image field %r replaces %r; points marked missing under it are tried again", job.id,
                     field_now, job.image_field)
            job.image_field, retry_missing = field_now, True
        if retry_missing and not dry_run:
            job.errors = []  # every missing or failed point is tried again: its reason is recorded anew if it fails
        if dry_run:
            total = client.store.count(collection)
            filled = client.count_with_vector(collection, job.target) if job.strategy != Strategy.ADOPT else total
            return RunReport(collection, job=job, dry_run=True, remaining=total - filled)
        check_lock(job, owner)
        if catch_up:
            log.info("job %s is %s: filling the points written since without '%s'", job.id, job.phase, job.target)
        else:
            advance(job, Phase.RUNNING if job.strategy != Strategy.ADOPT else job.phase, collection)
    sess = _Session(client, collection, owner, lock_ttl)
    if not started:  # a resumed job: take its lock (a new one was recorded with it)
        sess.save(meta, job)
    # verify we hold it (two starters racing on a server: the later write wins, the loser stops here)
    if sess.load()[1].lock.owner != owner:  # type: ignore[union-attr]
        raise JobLockedError(f"upgrade job {job.id} was taken by another process while starting")
    budget = [max_batches if max_batches is not None else -1]
    processed = 0
    stages: dict[str, float] = {}
    try:
        if job.strategy.converts and job.phase != Phase.CLEANED:
            processed += _convert_stage(client, collection, job, sess, batch_size, progress, budget, engine)
        if job.strategy.extracts and budget[0] != 0:
            processed += _backfill_stage(client, collection, job, sess, batch_size, progress, budget, seed, retry_missing,
                                         images or ImageRefs(), stages, engine)
        total = client.store.count(collection)
        filled = total if job.strategy == Strategy.ADOPT else client.count_with_vector(collection, job.target)
        pending = 0
        if job.strategy == Strategy.CONVERT:
            pending = total - filled
        elif job.strategy != Strategy.ADOPT:
            pending = client.store.count(collection, mark_not_in(f"{PROVENANCE_KEY}.{provenance_key(job.target)}", DONE_MARKS))
        if job.strategy != Strategy.ADOPT:
            changed_n = job.counts.get(Count.CHANGED_DURING_RUN.value, 0)
            job.counts = _counts_from_store(client, collection, job, filled)
            if changed_n:
                job.counts[Count.CHANGED_DURING_RUN.value] = changed_n
        meta, current = sess.load()
        job.lock = current.lock
        if pending == 0 and filled == total:
            advance(job, Phase.FILLED if job.phase in (Phase.RUNNING, Phase.FILLED) else job.phase, collection)
        if job.target in meta.vectors:
            meta.vectors[job.target].filled = filled
            if filled == total and job.phase == Phase.FILLED and meta.vectors[job.target].state == VectorState.FILLING:
                _activate_if_kept_in_sync(client, meta, job)
        stopped = budget[0] == 0 and pending > 0
        sess.save(meta, job, hold=False)
    except BaseException:
        # leave the lock to expire only if we died; on a Python-level error release it now
        try:
            meta2, cur = sess.load()
            if cur.lock is not None and cur.lock.owner == owner:
                sess.save(meta2, cur, hold=False)
        except Exception:  # pragma: no cover - best effort on the way out
            pass
        raise
    rep = RunReport(collection, job=job, processed=processed, remaining=total - filled,
                    seconds=time.perf_counter() - t0, stopped_early=stopped, stage_seconds=stages)
    if catch_up:
        rep.notes.append(f"'{collection}' was already cut over to {job.target_model}: this run filled {processed} point(s) "
                         f"written since without '{job.target}'" + (f"; {total - filled} still lack it" if filled < total else ""))
    return rep
