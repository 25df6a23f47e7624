"""Per-class hold-out splits: the images a fit or a training run never sees, to measure retrieval on."""

from __future__ import annotations

import numpy as np


def per_class_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator, minimum: int = 2) -> np.ndarray:
    """Indices held out: ``fraction`` of each class, at least ``minimum`` (classes with fewer than ``minimum + 2``
    images stay whole), so leave-one-out retrieval on them has same-class neighbours to find. Sorted."""
    out = []
    for c in np.unique(labels) if fraction > 0 else []:
        idx = np.flatnonzero(labels == c)
        if len(idx) >= minimum + 2:
            out.append(rng.choice(idx, size=max(minimum, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(out)) if out else np.empty(0, dtype=np.int64)
