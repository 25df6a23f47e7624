"""Benchmark: the backfill curve (Q6) on the P1 setting.

    python -m benchmarks.p1_backfill [--seeds 0 1 2] [--epochs 30] [--data DIR]

Old = Lite0 + head (classes 0-49); new = the BCT Lite2 model (library defaults). The gallery (5,000
validation images) is re-extracted with the new model from 0 to 100% in steps of 10%, in random order and
in the project's priority order (the old model's uncertainty, ``qdrant_compat.upgrade.priority``). Queries
always come from the new model; each searches the filled points through their new vectors and the rest
through their old vectors, merged by score: what ``CompatClient.query`` does during a partial fill.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from benchmarks.common import LITE_SPEC, NEW_BACKBONE, OLD_BACKBONE, SEEN, p1_parser, write_results
from benchmarks.p1_bct import embed, split_data, train_head
from qdrant_compat.cards import ModelCard
from qdrant_compat.evaluation import evaluate_pair, l2_normalize
from qdrant_compat.evaluation.calibration import fit_score_calibration
from qdrant_compat.evaluation.metrics import metrics_from_scores
from qdrant_compat.training import BCT_LOSSES, PLAIN_LOSSES, TrainConfig, build_old_targets
from qdrant_compat.upgrade.priority import (
    ErrorModel,
    backfill_order,
    density_scores,
    disagreement_scores,
    uncertainty_scores,
)

log = logging.getLogger("benchmarks.p1_backfill")
FRACTIONS = [round(0.1 * i, 1) for i in range(11)]


def run_seed(d: dict[str, Any], seed: int, epochs: int, batch_size: int, calibrate: bool = True) -> dict[str, Any]:
    classes, y = d["classes"], d["y_tr"]
    seen = y < SEEN
    plain = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, losses=dict(PLAIN_LOSSES))
    old, _ = train_head(d["f0_tr"][seen], y[seen], classes[:SEEN], OLD_BACKBONE, plain)
    card = ModelCard(name="old", version=str(seed), dim=128, input=LITE_SPEC, classes=classes[:SEEN], fingerprint="-")
    w_old = old.classifier.weight.detach().numpy()
    tg = build_old_targets(card, w_old, y, classes, embed(old, d["f0_tr"]))
    bct, _ = train_head(d["f2_tr"], y, classes, NEW_BACKBONE,
                        TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, losses=dict(BCT_LOSSES)), old=tg)
    g_old, g_new = embed(old, d["f0_ev"]), embed(bct, d["f2_ev"])
    labels = d["y_ev"]
    oo = evaluate_pair(g_old, g_old, labels)["top1"]
    # the edge's score calibration, measured on train images (never on the evaluation images)
    t_new, t_old = embed(bct, d["f2_tr"]), embed(old, d["f0_tr"])
    cal = fit_score_calibration(t_new, t_new, t_old, seed=seed) if calibrate else {"a": 1.0, "b": 0.0}
    n = len(labels)
    orders = {"random": backfill_order("random", n, seed=seed),
              "priority": backfill_order("uncertainty", n, vectors=g_old, classifier=w_old)}
    orders.update(candidate_orders(g_old, w_old, bct.classifier.weight.detach().numpy(), t_old, t_new,
                                   classes[:SEEN], classes, seed))
    curves: dict[str, list[float]] = {}
    for name, order in orders.items():
        ys = []
        for f in FRACTIONS:
            filled = np.zeros(n, dtype=bool)
            filled[order[: int(round(f * n))]] = True
            ys.append(merged_top1(g_new, g_new, g_old, filled, labels, cal))
        curves[name] = ys
        log.info("seed %d %s: %s", seed, name, [round(v, 1) for v in ys])
    return {"old_old": oo, "curves": curves, "calibration": cal}


def _desc(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(scores), kind="stable")


def _ranks(scores: np.ndarray) -> np.ndarray:
    r = np.empty(len(scores))
    r[_desc(scores)] = np.arange(len(scores))
    return r


def candidate_orders(g_old: np.ndarray, w_old: np.ndarray, w_new: np.ndarray, t_old: np.ndarray, t_new: np.ndarray,
                     old_classes: list[str], new_classes: list[str], seed: int) -> dict[str, np.ndarray]:
    """The Q6 candidates, each from what an upgrade has before reading an image: the stored (old) vectors, the
    old and new classifiers, and a linear old->new converter fitted on training pairs (half of them; the other
    half trains the error model, so its targets are errors on pairs the converter did not see)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(t_old))
    a, b = idx[: len(idx) // 2], idx[len(idx) // 2 :]
    conv, *_ = np.linalg.lstsq(t_old[a], t_new[a], rcond=None)  # the converter (least-squares linear head)
    err = ErrorModel.fit(t_old[b], t_old[b] @ conv, t_new[b])
    unc = uncertainty_scores(g_old, w_old)
    dens = density_scores(g_old, w_old, k=10)
    return {
        "density": _desc(dens),
        "disagreement": _desc(disagreement_scores(g_old, w_old, g_old @ conv, w_new, old_classes, new_classes)),
        "converter_error": _desc(err.scores(g_old)),
        "uncertainty+density": np.argsort(_ranks(unc) + _ranks(dens), kind="stable"),
        "uncertainty+converter_error": np.argsort(_ranks(unc) + _ranks(err.scores(g_old)), kind="stable"),
    }


def merged_top1(q: np.ndarray, g_new: np.ndarray, g_old: np.ndarray, filled: np.ndarray, labels: np.ndarray,
                cal: dict[str, float]) -> float:
    """Leave-one-out top-1 of the partial-fill search: filled points scored in the new space, the rest
    through the bct route with the edge's calibration: what CompatClient.query does."""
    qn, gn, go = l2_normalize(q), l2_normalize(g_new), l2_normalize(g_old)

    def scores(s: int, e: int) -> np.ndarray:
        return np.where(filled[None, :], qn[s:e] @ gn.T, cal["a"] * (qn[s:e] @ go.T) + cal["b"])

    return 100.0 * float(metrics_from_scores(scores, len(q), labels, labels, leave_one_out=True)["top1"].mean())


def area(ys: list[float]) -> float:
    """Mean top-1 over the fill fractions (trapezoid rule on [0, 1])."""
    return float(np.trapezoid(ys, FRACTIONS))


def main() -> None:
    ap = p1_parser(__doc__)
    ap.add_argument("--plot", default=None, help="also write the curves as a PNG here")
    ap.add_argument("--no-calibration", action="store_true", help="merge raw scores (shows why calibration matters)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    d = split_data(args)
    runs = [run_seed(d, s, args.epochs, args.batch_size, calibrate=not args.no_calibration) for s in args.seeds]
    curves = {k: {"fraction": FRACTIONS, "top1": [r["curves"][k] for r in runs]} for k in runs[0]["curves"]}
    oo = [r["old_old"] for r in runs]
    areas = {k: [area(c) for c in curves[k]["top1"]] for k in curves}
    lowest = {k: [min(c) for c in curves[k]["top1"]] for k in curves}
    gains = {k: float(np.mean(areas[k]) - np.mean(areas["random"])) for k in curves if k != "random"}
    below = {k: not all(min(c) >= o for c, o in zip(curves[k]["top1"], oo, strict=True)) for k in curves}
    # the best order that keeps the never-below-old/old guarantee in every seed
    best = max((k for k in gains if not below[k]), key=lambda k: gains[k], default="priority")
    gain = gains[best]
    never_below = not below[best]
    targets = {"Q6": {"met": bool(gain >= 1.5 and never_below),
                      "value": {"order": best, "area_gain": gain, "gains": gains,
                                "every_seed_gain": {k: [a - r for a, r in zip(areas[k], areas["random"], strict=True)]
                                                    for k in gains},
                                "lowest_minus_old_old": float(min(lowest[best]) - max(oo))}}}
    path = write_results(args.out or ("p1_backfill.json" if args.eval_on == "val" else "p1_backfill_holdout.json"),
                         {"protocol": "P1", "seeds": args.seeds, "epochs": args.epochs, "bct_losses": BCT_LOSSES,
                          "calibrated": not args.no_calibration, "calibration": [r["calibration"] for r in runs],
                          "cells": {"old/old": {"top1": oo}}, "curves": curves,
                          "derived": {"area": areas, "lowest": lowest}, "targets": targets})
    mean = {k: np.mean(curves[k]["top1"], axis=0) for k in curves}
    print(f"\n### P1 backfill curve (seeds {args.seeds}; top-1 %, mean over seeds; old/old {np.mean(oo):.1f})\n")
    print("| filled | " + " | ".join(f"{int(100 * f)}%" for f in FRACTIONS) + " | area |")
    print("|---|" + "---|" * (len(FRACTIONS) + 1))
    for k in curves:
        print(f"| {k} | " + " | ".join(f"{v:.1f}" for v in mean[k]) + f" | {np.mean(areas[k]):.2f} |")
    print("\n| order | area - random | seeds | never below old/old |\n|---|---|---|---|")
    for k, g in gains.items():
        seeds_ = ", ".join(f"{v:+.2f}" for v in targets["Q6"]["value"]["every_seed_gain"][k])
        print(f"| {k} | {g:+.2f} | {seeds_} | {'yes' if not below[k] else 'NO'} |")
    print(f"\nQ6: best order {best}: area - random = {gain:+.2f} (target >= 1.5); never below old/old: {never_below} -> "
          f"{'met' if targets['Q6']['met'] else 'NOT met'}")
    if args.plot:
        from qdrant_compat.evaluation.plots import curves as draw

        draw({k: (FRACTIONS, list(mean[k])) for k in mean}, args.plot, baseline=float(np.mean(oo)))
    print(f"results: {path}")
    json.dumps(targets)


if __name__ == "__main__":
    main()
