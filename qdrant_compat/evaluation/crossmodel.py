"""Cross-model compatibility: query model x gallery model matrix and the derived figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdrant_compat._config import ShortRepr
from qdrant_compat.evaluation.metrics import retrieval_metrics, summarize


def evaluate_pair(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    labels: np.ndarray,
    *,
    seen_classes: set[int] | None = None,
    leave_one_out: bool = True,
    gallery_labels: np.ndarray | None = None,
) -> dict[str, float]:
    """top1/top5/mAP (in %) for one query/gallery cell, plus ``*_seen`` / ``*_new`` when ``seen_classes``."""
    gl = labels if gallery_labels is None else gallery_labels
    per = retrieval_metrics(query_emb, gallery_emb, labels, gl, leave_one_out=leave_one_out)
    out = summarize(per)
    if seen_classes is not None:
        seen = np.isin(labels, sorted(seen_classes))
        for tag, mask in (("seen", seen), ("new", ~seen)):
            for k, v in summarize(per, mask).items():
                out[f"{k}_{tag}"] = v
    return out


@dataclass(repr=False)
class CompatibilityReport(ShortRepr):
    """Cells keyed ``"query/gallery"`` -> metrics, and the derived figures of BENCHMARK.md."""

    cells: dict[str, dict[str, float]] = field(default_factory=dict)

    def derived(self, old: str = "old", new: str = "new", indep: str | None = None, metric: str = "top1") -> dict[str, Any]:
        c = self.cells
        oo = c[f"{old}/{old}"][metric]
        cross = c[f"{new}/{old}"][metric]
        out: dict[str, Any] = {"old_top1": oo, "cross_top1": cross, "criterion_met": bool(cross > oo)}
        if f"{new}/{new}" in c:
            out["new_top1"] = c[f"{new}/{new}"][metric]
        if indep and f"{indep}/{indep}" in c:
            ii = c[f"{indep}/{indep}"][metric]
            out["update_gain"] = (cross - oo) / (ii - oo) if ii != oo else float("nan")
            if f"{new}/{new}" in c:
                out["compatibility_cost"] = ii - c[f"{new}/{new}"][metric]
        return out


def cross_model_matrix(
    embeddings: dict[str, np.ndarray], labels: np.ndarray, *, seen_classes: set[int] | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> CompatibilityReport:
    """Evaluate every (query, gallery) pair of equally-dimensioned embeddings of the same images."""
    rep = CompatibilityReport()
    names = list(embeddings)
    for qn, gn in pairs or [(a, b) for a in names for b in names]:
        if embeddings[qn].shape[1] != embeddings[gn].shape[1]:
            continue
        rep.cells[f"{qn}/{gn}"] = evaluate_pair(embeddings[qn], embeddings[gn], labels, seen_classes=seen_classes)
    return rep
