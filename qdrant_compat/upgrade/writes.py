"""Writing a backfill batch: the one step every engine shares, over a :class:`~qdrant_compat.store.Store` alone.

The local engine's writer thread and the Ray engine's write actors call :func:`write_extracted`, so a point
is written the same way wherever it was embedded: its write stamp and image reference re-checked against
what the scan read (a point re-written or deleted meanwhile keeps its new state and is left for the next
pass), a model output that is not a finite non-zero vector marked ``failed``, then the vectors and their
provenance marks in one request. :func:`hold_lease` is how a worker that writes on its own checks, before
each batch, that the run it writes for still holds the job's lock, and extends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdrant_compat.client import PROVENANCE_KEY, STAMP_KEY
from qdrant_compat.engines.base import finite_rows
from qdrant_compat.enums import Mark
from qdrant_compat.errors import JobLockedError
from qdrant_compat.metadata import META_KEY, Lock, read_block
from qdrant_compat.store import Store
from qdrant_compat.upgrade.state import provenance_key

log = logging.getLogger(__name__)
CHANGED = "changed"  # not a mark: the point changed while it was being re-extracted, nothing was written


@dataclass(frozen=True)
class FillTarget:
    """Where a backfill writes: the collection, its new vector, and the payload field images are named by."""

    collection: str
    vector: str
    model: str
    image_field: str


@dataclass
class Written:
    """What one batch's write did: the ids per mark written, the points skipped as changed, new errors."""

    marks: dict[str, list[Any]] = field(default_factory=dict)
    changed: list[Any] = field(default_factory=list)
    errors: dict[Any, str] = field(default_factory=dict)


def seen_key(payload: dict[str, Any] | None, image_field: str) -> tuple[Any, Any]:
    """What the re-check compares: the point's write stamp and image reference."""
    payload = payload or {}
    return (payload.get(PROVENANCE_KEY) or {}).get(STAMP_KEY), payload.get(image_field)


def unchanged(store: Store, t: FillTarget, seen: dict[Any, tuple[Any, Any]]) -> set[Any]:
    """Ids of ``seen`` whose write stamp and image reference are still what the scan read."""
    now = {r.id: seen_key(r.payload, t.image_field)
           for r in store.retrieve(t.collection, list(seen), with_payload=[PROVENANCE_KEY, t.image_field])}
    return {pid for pid, key in seen.items() if pid in now and now[pid] == key}


def write_vectors(store: Store, collection: str, vector: str, vectors: dict[Any, list[float]],
                  marks: dict[str, list[Any]]) -> None:
    """Vectors first, then their provenance, in one request (a crash between them only means the batch is redone)."""
    store.write_vectors(collection, vector, vectors, mark_key=provenance_key(vector), marks=marks,
                        mark_field=PROVENANCE_KEY)


def write_extracted(store: Store, t: FillTarget, seen: dict[Any, tuple[Any, Any]], ok_ids: Sequence[Any],
                    vectors: np.ndarray, missing: Sequence[Any], failed: Sequence[Any],
                    unreachable: Sequence[Any] = ()) -> Written:
    """Write one batch: ``ok_ids`` with their ``vectors`` (rows in order), ``missing`` / ``failed`` /
    ``unreachable`` marks (three disjoint lists).

    ``seen`` holds, for every point of the batch, :func:`seen_key` as the scan read it."""
    keep = unchanged(store, t, seen)
    out = Written(changed=[pid for pid in seen if pid not in keep])
    good_ids, good = [], []
    bad = list(failed)
    usable = finite_rows(np.asarray(vectors, np.float32)) if len(ok_ids) else np.zeros(0, bool)
    for pid, v, fine in zip(ok_ids, vectors, usable, strict=True):
        if pid not in keep:
            continue
        if fine:
            good_ids.append(pid)
            good.append(v.tolist())
        else:  # a model that emits NaN for an image: that point fails, the rest goes on
            out.errors[pid] = f"{t.model} produced a non-finite or zero vector"
            bad.append(pid)
    out.marks = {Mark.EXTRACTED.value: good_ids, Mark.MISSING.value: [p for p in missing if p in keep],
                 Mark.FAILED.value: [p for p in bad if p in keep],
                 Mark.UNREACHABLE.value: [p for p in unreachable if p in keep]}
    write_vectors(store, t.collection, t.vector, dict(zip(good_ids, good, strict=True)), out.marks)
    return out


def hold_lease(store: Store, collection: str, owner: str, ttl: float, *, now: float | None = None) -> None:
    """Check that ``owner`` still holds the collection's job lock; extend it when half its time is spent.

    A worker writing on its own calls this before every batch, so it never writes for a run whose lock was
    taken over, and a run whose driver cannot reach the store meanwhile (an embedded store is owned by one
    process) keeps its lock.

    Raises:
        JobLockedError: the job is gone, or its lock is held by someone else.
    """
    now = time.time() if now is None else now
    raw = store.metadata(collection)
    meta = read_block(raw)
    job = meta.job if meta is not None else None
    if job is None or job.lock is None or job.lock.owner != owner:
        holder = job.lock.owner if job is not None and job.lock is not None else "nobody"
        raise JobLockedError(f"the upgrade job of '{collection}' is no longer held by {owner} (held by {holder}); "
                             "this worker stops writing")
    if job.lock.expires_at - now < ttl / 2:
        job.lock = Lock(owner, now + ttl)
        job.updated = now
        meta.job = job  # type: ignore[union-attr]
        store.set_metadata(collection, META_KEY, meta.to_dict())  # type: ignore[union-attr]
