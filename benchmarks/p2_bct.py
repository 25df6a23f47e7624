"""Benchmark P2 (BENCHMARK.md): backward-compatible training from scratch, torchvision ResNet-18.

    python -m benchmarks.p2_bct [--seeds 0 1 2] [--epochs 15] [--size 64] [--device auto] [--data DIR]
    python -m benchmarks.p2_bct --npz examples/data/omniglot_small.npz --seen 10 --classes 20 --epochs 1 --size 32
                                                     # a toy run on the committed fixture (CPU, a minute)

Sized for one GPU (H100: a few minutes for 3 seeds); it runs on a CPU too, slowly (about 14 minutes per
model at 64 px and 10 epochs on 2 cores). Old = ResNet-18 on the first ``--seen`` classes; new = ResNet-18
on all, independent (``indep``), backward-compatible with the library default losses (``bct``) and with the
published plain BCT (``bct_plain``: norm_softmax + influence). Every new model starts from its *own*
initialisation (seed + 1000): with the old model's seed a new model inherits its first weights and is
partly compatible for free. The negative control ``indep/old`` must stay at chance (top-1 <= 2 x chance +
1), or the run is flagged invalid in the JSON and the table. Written to ``benchmarks/results/p2_bct.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    NEW_SEED_OFFSET,
    SEEN,
    collect_cells,
    data_dir,
    mean_std,
    negative_control,
    print_targets,
    tiny_imagenet,
    write_results,
)
from qdrant_compat.cards import InputSpec, ModelCard
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.models import EmbeddingModel, ModelConfig
from qdrant_compat.training import BCT_LOSSES, PLAIN_LOSSES, TrainConfig, build_old_targets, train_model
from qdrant_compat.training.trainer import materialize

log = logging.getLogger("benchmarks.p2_bct")
PLAIN_BCT_LOSSES = {"norm_softmax": 1.0, "influence": 1.0}  # the published method (Shen et al. 2020)


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


def run_p2(train: Any, test: Any, *, seen: int, seeds: list[int], epochs: int, size: int, batch_size: int, lr: float,
           device: str) -> dict[str, Any]:
    """Train old / indep / bct / bct_plain per seed and return the results document (cells, targets, control)."""
    spec = InputSpec(size=size, channels=3)
    t0 = time.perf_counter()
    x_tr, x_ev = materialize(train, spec), materialize(test, spec)
    log.info("decoded and preprocessed %d images in %.0fs", len(x_tr) + len(x_ev), time.perf_counter() - t0)
    y_tr, y_ev = np.asarray(train.labels), np.asarray(test.labels)
    classes = [str(c) for c in train.classes]
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        def cfg(s: int, losses: dict[str, float]) -> TrainConfig:
            return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=s, device=device, hflip=True,
                               losses=dict(losses))

        new_seed = seed + NEW_SEED_OFFSET
        is_seen = y_tr < seen
        old = fit(x_tr[torch.from_numpy(is_seen)], y_tr[is_seen], classes[:seen], cfg(seed, PLAIN_LOSSES), spec).model
        indep_res = fit(x_tr, y_tr, classes, cfg(new_seed, PLAIN_LOSSES), spec)
        card = ModelCard(name="old", version=str(seed), dim=128, input=spec, classes=classes[:seen], fingerprint="-")
        tg = build_old_targets(card, old.classifier.weight.detach().cpu().numpy(), y_tr, classes,
                               embed_images(old, x_tr, device))
        bct_res = fit(x_tr, y_tr, classes, cfg(new_seed, BCT_LOSSES), spec, old=tg)
        plain_res = fit(x_tr, y_tr, classes, cfg(new_seed, PLAIN_BCT_LOSSES), spec, old=tg)
        e = {"old": embed_images(old, x_ev, device), "indep": embed_images(indep_res.model, x_ev, device),
             "bct": embed_images(bct_res.model, x_ev, device), "bct_plain": embed_images(plain_res.model, x_ev, device)}
        pairs = (("old", "old"), ("indep", "indep"), ("indep", "old"), ("bct", "old"), ("bct", "bct"),
                 ("bct_plain", "old"), ("bct_plain", "bct_plain"))
        cells = {f"{q}/{g}": evaluate_pair(e[q], e[g], y_ev, seen_classes=set(range(seen))) for q, g in pairs}
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
    control = negative_control(cells_all, len(classes))
    s4 = float(np.mean([r["t_bct"] for r in runs]) / np.mean([r["t_indep"] for r in runs]))
    return {"protocol": "P2", "seeds": seeds, "new_model_seeds": [s + NEW_SEED_OFFSET for s in seeds], "epochs": epochs,
            "size": size, "classes": len(classes), "seen": seen, "device": device, "cells": cells_all,
            "system": {"S4_ratio": s4}, "targets": targets, "negative_control": control, "valid": control["valid"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--npz", default=None, help="another npz bundle (e.g. the Omniglot fixture, for a toy run)")
    ap.add_argument("--classes", type=int, default=None, help="use only the first N classes")
    ap.add_argument("--seen", type=int, default=SEEN, help="classes the old model is trained on")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="p2_bct.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.npz:
        from qdrant_compat.data import open_source

        train = open_source(args.npz, split="train", max_classes=args.classes)
        test = open_source(args.npz, split="test", max_classes=args.classes)
    else:
        train, test = tiny_imagenet(data_dir(args.data))
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    doc = run_p2(train, test, seen=args.seen, seeds=args.seeds, epochs=args.epochs, size=args.size,
                 batch_size=args.batch_size, lr=args.lr, device=device)
    path = write_results(args.out, doc)
    control = doc["negative_control"]
    print(f"### P2 from scratch ({'VALID' if doc['valid'] else 'INVALID RUN: negative control failed'}; seeds "
          f"{args.seeds}, new models {doc['new_model_seeds']}, {args.epochs} epochs, {args.size} px, {device})\n")
    print("| cell | top-1 | top-1 seen | top-1 new | mAP |\n|---|---|---|---|---|")
    for c, m in doc["cells"].items():
        flag = f" (negative control: limit {control['limit']:.1f})" if c == control["cell"] else ""
        print(f"| {c}{flag} | {mean_std(m['top1'])} | {mean_std(m['top1_seen'])} | {mean_std(m['top1_new'])} | "
              f"{mean_std(m['mAP'])} |")
    print_targets(doc["targets"])
    print(f"S4 {doc['system']['S4_ratio']:.2f}; results: {path}")


if __name__ == "__main__":
    main()
