"""Benchmark P2 (BENCHMARK.md): backward-compatible training from scratch, torchvision ResNet-18.

    python -m benchmarks.p2_bct [--seeds 0 1 2] [--epochs 15] [--size 64] [--device auto] [--data DIR]

Sized for one GPU (H100: a few minutes for 3 seeds); it runs on a CPU too, slowly (about 14 minutes per
model at 64 px and 10 epochs on 2 cores). Old = ResNet-18 on classes 0-49; new = ResNet-18 on all 100,
independent (``indep``) and backward-compatible (``bct``, the library default losses). Same cells as P1,
written to ``benchmarks/results/p2_bct.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import SEEN, collect_cells, data_dir, mean_std, tiny_imagenet, write_results
from qdrant_compat.cards import InputSpec, ModelCard
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.models import EmbeddingModel, ModelConfig
from qdrant_compat.training import BCT_LOSSES, PLAIN_LOSSES, TrainConfig, build_old_targets, train_model
from qdrant_compat.training.trainer import materialize

log = logging.getLogger("benchmarks.p2_bct")


@torch.no_grad()
def embed_images(model: EmbeddingModel, x: torch.Tensor, device: str, batch: int = 1024) -> np.ndarray:
    model.eval().to(device)
    out = [model(x[s : s + batch].to(device)).cpu() for s in range(0, len(x), batch)]
    model.cpu()
    return torch.cat(out).numpy()


def fit(x: torch.Tensor, y: np.ndarray, classes: list[str], cfg: TrainConfig, spec: InputSpec, old=None):  # type: ignore[no-untyped-def]
    from benchmarks.p1_bct import FeatureSource

    return train_model(FeatureSource(y, classes), ModelConfig(backbone="resnet18", dim=128, head="mlp"), cfg, spec,
                       old=old, images=x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train, test = tiny_imagenet(data_dir(args.data))
    spec = InputSpec(size=args.size, channels=3)
    t0 = time.perf_counter()
    x_tr, x_ev = materialize(train, spec), materialize(test, spec)
    log.info("decoded and preprocessed %d images in %.0fs", len(x_tr) + len(x_ev), time.perf_counter() - t0)
    y_tr, y_ev = np.asarray(train.labels), np.asarray(test.labels)
    classes = [str(c) for c in train.classes]
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        base = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, device=device, hflip=True)
        seen = y_tr < SEEN
        old = fit(x_tr[torch.from_numpy(seen)], y_tr[seen], classes[:SEEN], TrainConfig(**base, losses=dict(PLAIN_LOSSES)), spec).model
        indep_res = fit(x_tr, y_tr, classes, TrainConfig(**base, losses=dict(PLAIN_LOSSES)), spec)
        card = ModelCard(name="old", version=str(seed), dim=128, input=spec, classes=classes[:SEEN], fingerprint="-")
        tg = build_old_targets(card, old.classifier.weight.detach().cpu().numpy(), y_tr, classes,
                               embed_images(old, x_tr, device))
        bct_res = fit(x_tr, y_tr, classes, TrainConfig(**base, losses=dict(BCT_LOSSES)), spec, old=tg)
        e = {"old": embed_images(old, x_ev, device), "indep": embed_images(indep_res.model, x_ev, device),
             "bct": embed_images(bct_res.model, x_ev, device)}
        cells = {f"{q}/{g}": evaluate_pair(e[q], e[g], y_ev, seen_classes=set(range(SEEN)))
                 for q, g in (("old", "old"), ("indep", "indep"), ("indep", "old"), ("bct", "old"), ("bct", "bct"))}
        log.info("seed %d: %s", seed, {k: round(v["top1"], 1) for k, v in cells.items()})
        runs.append({"cells": cells, "t_indep": indep_res.seconds, "t_bct": bct_res.seconds})
    cells_all = collect_cells(runs)
    t1 = {c: np.asarray(m["top1"]) for c, m in cells_all.items()}
    gain = (t1["bct/old"] - t1["old/old"]) / (t1["indep/indep"] - t1["old/old"])
    targets = {"Q1": {"met": bool((t1["bct/old"] > t1["old/old"]).all() and (t1["bct/old"] - t1["old/old"]).mean() >= 3),
                      "value": float((t1["bct/old"] - t1["old/old"]).mean())},
               "Q2": {"met": bool(gain.mean() >= 0.5), "value": float(gain.mean())},
               "Q3": {"met": bool((t1["indep/indep"] - t1["bct/bct"]).mean() <= 0.5),
                      "value": float((t1["indep/indep"] - t1["bct/bct"]).mean())}}
    s4 = float(np.mean([r["t_bct"] for r in runs]) / np.mean([r["t_indep"] for r in runs]))
    path = write_results("p2_bct.json", {"protocol": "P2", "seeds": args.seeds, "epochs": args.epochs, "size": args.size,
                                         "cells": cells_all, "system": {"S4_ratio": s4}, "targets": targets})
    print("| cell | top-1 | top-1 seen | top-1 new | mAP |\n|---|---|---|---|---|")
    for c, m in cells_all.items():
        print(f"| {c} | {mean_std(m['top1'])} | {mean_std(m['top1_seen'])} | {mean_std(m['top1_new'])} | {mean_std(m['mAP'])} |")
    print(f"targets: {targets}; S4 {s4:.2f}; results: {path}")


if __name__ == "__main__":
    main()
