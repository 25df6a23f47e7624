"""Checks an upgrade must pass: every point holds exactly one target vector that matches a fresh
computation, provenance is recorded, and user payloads are unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qdrant_compat.client import PROVENANCE_KEY, CompatClient, user_payload
from qdrant_compat.upgrade.state import provenance_key


def payload_snapshot(client: CompatClient, collection: str) -> dict[Any, dict[str, Any]]:
    """User payload per point id (the provenance field left out)."""
    return {r.id: user_payload(r.payload) for r in client.scroll_all(collection)}


def check_fill(
    client: CompatClient,
    collection: str,
    target: str,
    *,
    reference: Callable[[list[Any]], np.ndarray] | None = None,
    payloads: dict[Any, dict[str, Any]] | None = None,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Verify the target vector of every point.

    Args:
        reference: given the records (with payload), returns the expected target vectors (unit-normalised
            comparison), e.g. a fresh extraction from the image path.
        payloads: a :func:`payload_snapshot` taken before the upgrade.

    Returns:
        counts of points, points without the target vector, marked done but without it, with a wrong
        vector, with a changed payload; ``ok`` when all are zero.
    """
    recs = list(client.scroll_all(collection, with_vectors=[target]))
    pk = provenance_key(target)
    missing = [r.id for r in recs if target not in (r.vector or {})]
    # an 'extracted' mark must come with the vector; a vector without a mark was converted
    no_prov = [r.id for r in recs if (r.payload or {}).get(PROVENANCE_KEY, {}).get(pk) in ("extracted", "converted")
               and target not in (r.vector or {})]
    wrong: list[Any] = []
    max_diff = 0.0
    have = [r for r in recs if target in (r.vector or {})]
    if reference is not None and have:
        exp = np.asarray(reference(have), dtype=np.float64)
        got = np.asarray([r.vector[target] for r in have], dtype=np.float64)
        exp /= np.maximum(np.linalg.norm(exp, axis=1, keepdims=True), 1e-12)
        got /= np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
        diff = np.abs(exp - got).max(axis=1)
        max_diff = float(diff.max())
        wrong = [r.id for r, d in zip(have, diff, strict=True) if d > atol]
    changed: list[Any] = []
    if payloads is not None:
        now = {r.id: user_payload(r.payload) for r in recs}
        changed = [i for i in set(payloads) | set(now) if payloads.get(i) != now.get(i)]
    out = {"points": len(recs), "missing_vector": len(missing), "missing_provenance": len(no_prov),
           "wrong_vector": len(wrong), "changed_payload": len(changed), "max_abs_diff": max_diff}
    out["ok"] = not (missing or no_prov or wrong or changed)
    return out
