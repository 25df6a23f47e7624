"""Benchmark P1 (BENCHMARK.md): backward-compatible training on Tiny-ImageNet-100, frozen EfficientNet-Lite.

    python -m benchmarks.p1_bct [--seeds 0 1 2] [--epochs 30] [--data DIR] [--eval-on val|holdout]

Old = Lite0 + 128-d head trained on classes 0-49; new = Lite2 + 128-d head on all 100 classes, trained
independently (``indep``) and backward-compatibly (``bct``, the library default losses). Cells are
evaluated leave-one-out on the 5,000 validation images (``--eval-on holdout`` evaluates on 10% of the
train split instead: that is what was used to choose losses, so validation never picks hyper-parameters).
Writes ``benchmarks/results/p1_bct.json`` (or ``p1_bct_holdout.json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    LITE_SPEC,
    NEW_BACKBONE,
    OLD_BACKBONE,
    SEEN,
    backbone_features,
    collect_cells,
    data_dir,
    mean_std,
    negative_control,
    p1_parser,
    print_targets,
    tiny_imagenet,
    write_results,
)
from qdrant_compat.cards import ModelCard
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.models import EmbeddingModel, ModelConfig
from qdrant_compat.training import BCT_LOSSES, PLAIN_LOSSES, TrainConfig, build_old_targets, train_model
from qdrant_compat.training.trainer import TrainResult

log = logging.getLogger("benchmarks.p1_bct")


@dataclass
class FeatureSource:
    """Labels and class names of a feature matrix: what train_model needs besides the features."""

    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def train_head_result(feats: np.ndarray, labels: np.ndarray, classes: list[str], backbone: str, cfg: TrainConfig,
                      old=None) -> TrainResult:  # type: ignore[no-untyped-def]
    """A 128-d MLP head on frozen ``backbone`` features; the whole :class:`TrainResult` (heads a loss trained too)."""
    mcfg = ModelConfig(backbone=backbone, dim=128, head="mlp", freeze_backbone=True, num_classes=len(classes))
    return train_model(FeatureSource(labels, classes), mcfg, cfg, LITE_SPEC, old=old, features=torch.from_numpy(feats))


def train_head(feats: np.ndarray, labels: np.ndarray, classes: list[str], backbone: str, cfg: TrainConfig,
               old=None) -> tuple[EmbeddingModel, float]:  # type: ignore[no-untyped-def]
    res = train_head_result(feats, labels, classes, backbone, cfg, old=old)
    return res.model, res.seconds


@torch.no_grad()
def embed(model: EmbeddingModel, feats: np.ndarray) -> np.ndarray:
    return model.embed_features(torch.from_numpy(feats)).numpy()


def split_data(args: argparse.Namespace) -> dict[str, Any]:
    train, test = tiny_imagenet(data_dir(args.data))
    f0_tr, f2_tr = backbone_features(OLD_BACKBONE, "train", train), backbone_features(NEW_BACKBONE, "train", train)
    y_tr = np.asarray(train.labels)
    if args.eval_on == "val":
        f0_ev, f2_ev = backbone_features(OLD_BACKBONE, "test", test), backbone_features(NEW_BACKBONE, "test", test)
        y_ev = np.asarray(test.labels)
    else:  # 10% of each class of the train split, never the validation images
        rng = np.random.default_rng(1234)
        hold = np.zeros(len(y_tr), bool)
        for c in range(100):
            idx = np.flatnonzero(y_tr == c)
            hold[rng.choice(idx, size=len(idx) // 10, replace=False)] = True
        f0_ev, f2_ev, y_ev = f0_tr[hold], f2_tr[hold], y_tr[hold]
        f0_tr, f2_tr, y_tr = f0_tr[~hold], f2_tr[~hold], y_tr[~hold]
    return {"f0_tr": f0_tr, "f2_tr": f2_tr, "y_tr": y_tr, "f0_ev": f0_ev, "f2_ev": f2_ev, "y_ev": y_ev,
            "classes": [str(c) for c in train.classes]}


def run_seed(d: dict[str, Any], seed: int, epochs: int, bct_losses: dict[str, float],
             loss_options: dict[str, dict[str, float]], batch_size: int = 512) -> dict[str, Any]:
    classes, y_tr = d["classes"], d["y_tr"]
    seen_tr = y_tr < SEEN
    plain = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, losses=dict(PLAIN_LOSSES))
    old, _ = train_head(d["f0_tr"][seen_tr], y_tr[seen_tr], classes[:SEEN], OLD_BACKBONE, plain)
    indep, t_indep = train_head(d["f2_tr"], y_tr, classes, NEW_BACKBONE, plain)
    # the old model's embeddings of the new training images (what running its ONNX file gives)
    old_card = ModelCard(name="old", version=str(seed), dim=128, input=LITE_SPEC, classes=classes[:SEEN], fingerprint="-")
    targets = build_old_targets(old_card, old.classifier.weight.detach().numpy(), y_tr, classes, embed(old, d["f0_tr"]))
    bct_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, losses=bct_losses,
                          loss_options=loss_options)
    bct, t_bct = train_head(d["f2_tr"], y_tr, classes, NEW_BACKBONE, bct_cfg, old=targets)
    e = {"old": embed(old, d["f0_ev"]), "indep": embed(indep, d["f2_ev"]), "bct": embed(bct, d["f2_ev"])}
    seen = set(range(SEEN))
    cells = {}
    for q, g in (("old", "old"), ("indep", "indep"), ("indep", "old"), ("bct", "old"), ("bct", "bct")):
        cells[f"{q}/{g}"] = evaluate_pair(e[q], e[g], d["y_ev"], seen_classes=seen)
    log.info("seed %d: %s", seed, {k: round(v["top1"], 2) for k, v in cells.items()})
    return {"cells": cells, "t_indep": t_indep, "t_bct": t_bct, "bct_model": bct}


def system_s1(model: EmbeddingModel, tmp: str) -> dict[str, float]:
    """S1: export parity of the full new extractor (Lite2 + head) and ORT vs torch eager throughput."""
    from pathlib import Path

    from qdrant_compat.export import export_embedding_model, ort_session

    path = Path(tmp) / "bct.onnx"
    rep = export_embedding_model(model, LITE_SPEC, path, name="bct", version="1")
    sess = ort_session(path, ["CPUExecutionProvider"])
    x = torch.randn(64, 3, 64, 64)
    xn = x.numpy()

    def bench(fn, reps: int = 5) -> float:  # type: ignore[no-untyped-def]
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return reps * len(x) / (time.perf_counter() - t0)

    with torch.no_grad():
        torch_ips = bench(lambda: model(x))
    ort_ips = bench(lambda: sess.run(None, {"input": xn}))
    return {"S1_max_abs_diff": rep.max_abs_diff, "S1_ort_ips": ort_ips, "S1_torch_ips": torch_ips,
            "S1_ort_vs_torch": ort_ips / torch_ips}


def main() -> None:
    ap = p1_parser(__doc__, batch_help="for every head (old, indep, bct)")
    ap.add_argument("--losses", default=json.dumps(BCT_LOSSES), help="JSON {loss: weight} for the bct model")
    ap.add_argument("--loss-options", default="{}", help="JSON {loss: {option: value}}")
    ap.add_argument("--no-system", action="store_true", help="skip S1 (export parity/throughput)")
    ap.add_argument("--out", default=None, help="results file name (default p1_bct.json / p1_bct_holdout.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    losses, options = json.loads(args.losses), json.loads(args.loss_options)
    d = split_data(args)
    runs = [run_seed(d, s, args.epochs, losses, options, args.batch_size) for s in args.seeds]
    cells = collect_cells(runs)
    t1 = {c: np.asarray(m["top1"]) for c, m in cells.items()}
    crit = t1["bct/old"] > t1["old/old"]
    gain = (t1["bct/old"] - t1["old/old"]) / (t1["indep/indep"] - t1["old/old"])
    cost = t1["indep/indep"] - t1["bct/bct"]
    s4 = float(np.mean([r["t_bct"] for r in runs]) / np.mean([r["t_indep"] for r in runs]))
    system: dict[str, float] = {"S4_ratio": s4, "S4_bct_seconds": float(np.mean([r["t_bct"] for r in runs])),
                                "S4_indep_seconds": float(np.mean([r["t_indep"] for r in runs]))}
    if not args.no_system:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            system.update(system_s1(runs[0]["bct_model"], tmp))
    derived = {
        "criterion_per_seed": crit.tolist(), "bct_old_minus_old_old": (t1["bct/old"] - t1["old/old"]).tolist(),
        "update_gain": gain.tolist(), "compatibility_cost": cost.tolist(),
    }
    targets = {
        # BENCHMARK.md (restated): the criterion in every seed with a margin of at least +1 top-1 point in each
        "Q1": {"met": bool(crit.all() and (t1["bct/old"] - t1["old/old"]).min() >= 1),
               "value": float((t1["bct/old"] - t1["old/old"]).min()), "mean": float((t1["bct/old"] - t1["old/old"]).mean())},
        "Q2": {"met": bool(gain.mean() >= 0.5), "value": float(gain.mean())},
        "Q3": {"met": bool(cost.mean() <= 0.5), "value": float(cost.mean())},
        "S4": {"met": bool(s4 <= 1.3), "value": s4},
    }
    if "S1_max_abs_diff" in system:
        targets["S1"] = {"met": bool(system["S1_max_abs_diff"] <= 1e-4 and system["S1_ort_vs_torch"] >= 1.0),
                         "value": {"max_abs_diff": system["S1_max_abs_diff"], "ort_vs_torch": system["S1_ort_vs_torch"]}}
    control = negative_control(cells, len(d["classes"]))
    if not control["valid"]:
        log.warning("INVALID RUN: negative control indep/old top-1 %s exceeds %.1f", control["top1"], control["limit"])
    name = args.out or ("p1_bct.json" if args.eval_on == "val" else "p1_bct_holdout.json")
    path = write_results(name, {"protocol": "P1", "seeds": args.seeds, "eval_on": args.eval_on, "epochs": args.epochs,
                                "batch_size": args.batch_size,
                                "bct_losses": losses, "loss_options": options, "cells": cells, "derived": derived,
                                "system": system, "targets": targets, "negative_control": control,
                                "valid": control["valid"]})
    print(f"\n### P1 backward-compatible training ({args.eval_on}, seeds {args.seeds}, {args.epochs} epochs)\n")
    print("| cell (query/gallery) | top-1 | top-5 | mAP | top-1 seen | top-1 new |")
    print("|---|---|---|---|---|---|")
    for c, m in cells.items():
        print(f"| {c} | {mean_std(m['top1'])} | {mean_std(m['top5'])} | {mean_std(m['mAP'])} | "
              f"{mean_std(m['top1_seen'])} | {mean_std(m['top1_new'])} |")
    print_targets(targets)
    print(f"\nnegative control indep/old top-1 {control['top1']} (limit {control['limit']:.1f}): "
          f"{'valid' if control['valid'] else 'INVALID RUN'}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
