"""``upgrade status|cutover|rollback|cleanup``: see, switch, undo, and finally drop the old vector."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import Any

from qdrant_client import models

from qdrant_compat.client import PROVENANCE_KEY, CompatClient
from qdrant_compat.errors import UpgradeError
from qdrant_compat.metadata import CompatMeta
from qdrant_compat.routing import candidate_routes
from qdrant_compat.upgrade.state import JobState, check_lock, make_owner, provenance_key

log = logging.getLogger(__name__)


def _job(meta: CompatMeta, collection: str) -> JobState:
    if meta.job is None:
        raise UpgradeError(f"collection '{collection}' has no upgrade job (start one with 'upgrade run')")
    return JobState.from_dict(meta.job)


def _prov_count(client: CompatClient, collection: str, vector: str, value: str) -> int:
    key = f"{PROVENANCE_KEY}.{provenance_key(vector)}"
    flt = models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])
    return client.qdrant.count(collection, count_filter=flt, exact=True).count


def upgrade_status(client: CompatClient, collection: str) -> dict[str, Any]:
    """Per named vector: points holding it, and how many were extracted, converted, missing, failed.

    For the vector a collection was created or adopted with, ``converted`` counts points indexed before
    provenance was tracked; it only matters for vectors filled by an upgrade."""
    meta = client.get_meta(collection)
    total = client.qdrant.count(collection, exact=True).count
    vectors = {}
    for name, entry in meta.vectors.items():
        have = client.count_with_vector(collection, name)
        marks = {k: _prov_count(client, collection, name, k) for k in ("extracted", "missing", "failed")}
        # a vector without an 'extracted' mark was written through a converter (rewrites carry no mark)
        vectors[name] = {"model": entry.model, "state": entry.state, "points": have,
                         "converted": max(have - marks["extracted"], 0), **marks}
    return {"collection": collection, "points": total, "read": meta.read, "write": meta.write, "vectors": vectors,
            "job": meta.job}


def cutover(client: CompatClient, collection: str, *, allow_partial: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Make the job's target the vector queries read and writes fill.

    Checks: the job is filled; every point holds a target vector (else those points would become
    unfindable: always refused); with ``allow_partial`` some may hold *converted* rather than extracted
    vectors or have missing images recorded.

    Raises:
        UpgradeError: a check failed (the message gives the counts and what to do).
    """
    meta = client.get_meta(collection)
    job = _job(meta, collection)
    check_lock(job, make_owner())
    if job.phase == "cut_over":
        return {"collection": collection, "already": True, "read": meta.read}
    if job.strategy == "adopt":
        raise UpgradeError(f"job {job.id} adopted {job.target_model} through its bct edge: queries and writes with it "
                           "already work; to give it its own vector run 'upgrade run --strategy backfill'")
    total = client.qdrant.count(collection, exact=True).count
    have = client.count_with_vector(collection, job.target)
    if have < total:
        raise UpgradeError(
            f"cutover refused: {total - have} of {total} points have no '{job.target}' vector yet and would become "
            "unfindable; run 'upgrade run' to finish (points with missing images need a converter or their images)"
        )
    pending = total - _prov_count(client, collection, job.target, "extracted")
    if pending and job.strategy != "convert" and not allow_partial:
        raise UpgradeError(
            f"cutover refused: {pending} of {total} points hold converted vectors or have missing/failed images "
            "instead of re-extracted ones; finish the backfill or pass --allow-partial to accept them"
        )
    out = {"collection": collection, "from": job.source, "to": job.target, "points": total,
           "not_extracted": pending, "dry_run": dry_run}
    if dry_run:
        return out
    meta.vectors[job.target].state = "active"
    meta.vectors[job.target].filled = have
    tgt_card = client.registry.get_model(job.target_model).card
    back = [r for r in candidate_routes(tgt_card, meta) if r.vector == job.source]
    meta.read = job.target
    meta.write = [job.target] + ([job.source] if back else [])
    if not back:
        meta.vectors[job.source].state = "retired"  # its model's queries would miss new points: refuse them
    job.phase = "cut_over"
    meta.job = job.to_dict()
    client.put_meta(collection, meta)
    out["source_kept_in_sync"] = bool(back)
    log.info("cut over %s from %s to %s", collection, job.source, job.target)
    return out


def rollback(client: CompatClient, collection: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Return queries and writes to the job's source vector while it still exists.

    Raises:
        UpgradeError: the source vector was cleaned up, or points written since cutover lack it.
    """
    meta = client.get_meta(collection)
    job = _job(meta, collection)
    check_lock(job, make_owner())
    if job.phase == "cleaned" or job.source not in meta.vectors:
        raise UpgradeError(f"cannot roll back: vector '{job.source}' ({job.source_model}) was dropped by cleanup; "
                           "restore the backup named in the job's cleanup record")
    total = client.qdrant.count(collection, exact=True).count
    have = client.count_with_vector(collection, job.source)
    if have < total:
        raise UpgradeError(f"cannot roll back: {total - have} point(s) written since cutover have no "
                           f"'{job.source}' vector; re-run an upgrade towards {job.source_model} for them first")
    out = {"collection": collection, "read": job.source, "dry_run": dry_run}
    if dry_run:
        return out
    meta.read = job.source
    meta.write = [job.source]
    meta.vectors[job.source].state = "active"
    if job.target in meta.vectors and job.strategy != "adopt":
        meta.vectors[job.target].state = "filling"  # kept: a later run only catches up
    if job.strategy == "adopt":
        meta.edges = [e for e in meta.edges if not (e.query == job.target_model and e.stored == job.source_model)]
    job.phase = "rolled_back"
    meta.job = job.to_dict()
    client.put_meta(collection, meta)
    return out


def cleanup(client: CompatClient, collection: str, *, yes: bool = False, backup_dir: str | Path | None = None,
            dry_run: bool = False) -> dict[str, Any]:
    """Drop the old vector after cutover, backed up first (server snapshot, or a copy of the embedded store).

    Raises:
        UpgradeError: not cut over yet, or ``yes`` not given.
    """
    meta = client.get_meta(collection)
    job = _job(meta, collection)
    if job.phase != "cut_over":
        raise UpgradeError(f"cleanup needs a cut-over job; job {job.id} is '{job.phase}'")
    if job.source == "":
        raise UpgradeError("the source is the collection's unnamed vector, which Qdrant cannot drop; it stays")
    out: dict[str, Any] = {"collection": collection, "drops": job.source, "dry_run": dry_run}
    if dry_run:
        return out
    if not yes:
        raise UpgradeError(f"cleanup drops vector '{job.source}' for good; pass --yes (a backup is made first)")
    out["backup"] = _backup(client, collection, backup_dir)
    client.qdrant.delete_vector_name(collection, job.source)
    meta = client.get_meta(collection)
    meta.vectors.pop(job.source, None)
    meta.write = [w for w in meta.write if w != job.source]
    meta.edges = [e for e in meta.edges if e.stored != job.source_model]
    job.phase = "cleaned"
    job.add_error(f"backup: {out['backup']}")
    meta.job = job.to_dict()
    client.put_meta(collection, meta)
    return out


def _backup(client: CompatClient, collection: str, backup_dir: str | Path | None) -> str:
    local_path = getattr(getattr(client.qdrant, "_client", None), "location", None)
    if local_path and local_path != ":memory:" and Path(local_path).is_dir():
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = Path(backup_dir or f"{local_path.rstrip('/')}.backup-{collection}-{stamp}")
        shutil.copytree(local_path, dest)
        return str(dest)
    if local_path == ":memory:":
        return "none (in-memory store)"
    snap = client.qdrant.create_snapshot(collection, wait=True)
    return f"snapshot {snap.name}" if snap else "snapshot"
