"""Benchmark S4: BCT training time vs independent training, same data and epochs (P1 heads, cached features).

    python -m benchmarks.s4_training_time [--repeats 3] [--epochs 30] [--data DIR]

Runs alternate (indep, bct, indep, bct, ...) so machine noise hits both alike; reports the ratio of the
median times. The old model's embeddings of the training images are computed once before BCT training
(reported separately: with a cache they come from the old head; from images, one ONNX pass).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np

from benchmarks.common import LITE_SPEC, NEW_BACKBONE, OLD_BACKBONE, SEEN, write_results
from benchmarks.p1_bct import embed, split_data, train_head
from qdrant_compat.cards import ModelCard
from qdrant_compat.training import BCT_LOSSES, PLAIN_LOSSES, TrainConfig, build_old_targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args()
    args.eval_on = "val"
    logging.basicConfig(level=logging.WARNING)
    d = split_data(args)
    y, classes = d["y_tr"], d["classes"]
    seen = y < SEEN
    plain = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0, losses=dict(PLAIN_LOSSES))
    old, _ = train_head(d["f0_tr"][seen], y[seen], classes[:SEEN], OLD_BACKBONE, plain)
    t0 = time.perf_counter()
    card = ModelCard(name="old", version="0", dim=128, input=LITE_SPEC, classes=classes[:SEEN], fingerprint="-")
    tg = build_old_targets(card, old.classifier.weight.detach().numpy(), y, classes, embed(old, d["f0_tr"]))
    prep = time.perf_counter() - t0
    bct_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0, losses=dict(BCT_LOSSES))
    t_indep, t_bct = [], []
    for _ in range(args.repeats):
        t_indep.append(train_head(d["f2_tr"], y, classes, NEW_BACKBONE, plain)[1])
        t_bct.append(train_head(d["f2_tr"], y, classes, NEW_BACKBONE, bct_cfg, old=tg)[1])
    ratio = statistics.median(t_bct) / statistics.median(t_indep)
    path = write_results("s4_training_time.json", {
        "epochs": args.epochs, "batch_size": args.batch_size, "repeats": args.repeats, "bct_losses": BCT_LOSSES,
        "indep_seconds": t_indep, "bct_seconds": t_bct, "old_targets_seconds": prep,
        "targets": {"S4": {"met": bool(ratio <= 1.3), "value": ratio}}})
    print(f"S4: BCT {statistics.median(t_bct):.1f}s vs independent {statistics.median(t_indep):.1f}s (median of "
          f"{args.repeats}) -> ratio {ratio:.2f} (target <= 1.3); old targets prepared once in {prep:.1f}s; {path}")
    np.asarray(ratio)


if __name__ == "__main__":
    main()
