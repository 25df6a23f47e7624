"""Benchmark Q7 (P1 protocol): compatible training when the new model's labels are withheld.

    python -m benchmarks.p1_nolabel [--seeds 0 1 2] [--epochs 30] [--data DIR]

The old model keeps its labelled training (Lite0 head on classes 0-49). The ``nolabel`` model (Lite2 head,
all 100 classes' images) is trained with ``no_labels=True`` and the library's label-free losses
(``NOLABEL_LOSSES``: instance-level new->old contrast + the new backbone's own neighbourhoods); it never
reads a label. Cells next to ``bct`` (labelled compatible training) and ``old/old``, seen/new split, on the
5,000 validation images. Target Q7: ``nolabel/old > old/old`` in every seed and ``nolabel/nolabel >=
old/old + 2`` top-1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import (
    LITE_SPEC,
    NEW_BACKBONE,
    OLD_BACKBONE,
    SEEN,
    collect_cells,
    mean_std,
    negative_control,
    p1_parser,
    print_targets,
    write_results,
)
from benchmarks.p1_bct import embed, split_data, train_head
from qdrant_compat.cards import ModelCard
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.training import (
    BCT_LOSSES,
    NOLABEL_LOSSES,
    PLAIN_LOSSES,
    TrainConfig,
    build_old_targets,
    unlabelled_old_targets,
)

log = logging.getLogger("benchmarks.p1_nolabel")


def old_side(d: dict[str, Any], seed: int, epochs: int, batch: int) -> tuple[Callable[..., TrainConfig], Any, np.ndarray,
                                                                          ModelCard]:
    """What every Q7 benchmark starts from: the seed's training settings (``cfg(losses, **kw)``), the old head
    (Lite0, trained on the seen classes only), its embeddings of every training image, and its card."""
    classes, y = d["classes"], d["y_tr"]
    seen = y < SEEN

    def cfg(losses: dict[str, float], **kw: Any) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, seed=seed, losses=dict(losses), **kw)

    old, _ = train_head(d["f0_tr"][seen], y[seen], classes[:SEEN], OLD_BACKBONE, cfg(PLAIN_LOSSES))
    card = ModelCard(name="old", version=str(seed), dim=128, input=LITE_SPEC, classes=classes[:SEEN], fingerprint="-")
    return cfg, old, embed(old, d["f0_tr"]), card


def run_seed(d: dict[str, Any], seed: int, epochs: int, batch: int) -> dict[str, Any]:
    classes, y = d["classes"], d["y_tr"]
    cfg, old, o_tr, card = old_side(d, seed, epochs, batch)
    indep, _ = train_head(d["f2_tr"], y, classes, NEW_BACKBONE, cfg(PLAIN_LOSSES))
    bct, _ = train_head(d["f2_tr"], y, classes, NEW_BACKBONE, cfg(BCT_LOSSES),
                        old=build_old_targets(card, old.classifier.weight.detach().numpy(), y, classes, o_tr))
    # label-free: the labels handed to the helper are never read (no_labels=True; tested in tests/training)
    nolabel, t_nl = train_head(d["f2_tr"], np.zeros_like(y), classes, NEW_BACKBONE, cfg(NOLABEL_LOSSES, no_labels=True),
                               old=unlabelled_old_targets(card, o_tr))
    e = {"old": embed(old, d["f0_ev"]), "indep": embed(indep, d["f2_ev"]), "bct": embed(bct, d["f2_ev"]),
         "nolabel": embed(nolabel, d["f2_ev"])}
    pairs = (("old", "old"), ("indep", "indep"), ("indep", "old"), ("bct", "old"), ("bct", "bct"), ("nolabel", "old"),
             ("nolabel", "nolabel"))
    cells = {f"{q}/{g}": evaluate_pair(e[q], e[g], d["y_ev"], seen_classes=set(range(SEEN))) for q, g in pairs}
    log.info("seed %d: %s", seed, {k: round(v["top1"], 1) for k, v in cells.items()})
    return {"cells": cells, "t_nolabel": t_nl}


def main() -> None:
    ap = p1_parser(__doc__, eval_on=False)
    args = ap.parse_args()
    args.eval_on = "val"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    d = split_data(args)
    runs = [run_seed(d, s, args.epochs, args.batch_size) for s in args.seeds]
    cells = collect_cells(runs)
    t1 = {c: np.asarray(m["top1"]) for c, m in cells.items()}
    targets = {"Q7": {"met": bool((t1["nolabel/old"] > t1["old/old"]).all()
                                  and (t1["nolabel/nolabel"] - t1["old/old"]).mean() >= 2),
                      "value": {"nolabel_old_minus_old_old": (t1["nolabel/old"] - t1["old/old"]).tolist(),
                                "nolabel_nolabel_minus_old_old": float((t1["nolabel/nolabel"] - t1["old/old"]).mean())}}}
    control = negative_control(cells, len(d["classes"]))
    path = write_results("p1_nolabel.json", {"protocol": "P1", "seeds": args.seeds, "epochs": args.epochs,
                                             "nolabel_losses": NOLABEL_LOSSES, "cells": cells, "targets": targets,
                                             "negative_control": control, "valid": control["valid"]})
    print(f"\n### P1 label-free compatible training (seeds {args.seeds}, {args.epochs} epochs)\n")
    print("| cell | top-1 | top-1 seen | top-1 new | mAP |\n|---|---|---|---|---|")
    for c, m in cells.items():
        print(f"| {c} | {mean_std(m['top1'])} | {mean_std(m['top1_seen'])} | {mean_std(m['top1_new'])} | {mean_std(m['mAP'])} |")
    print_targets(targets)
    print(f"\nnegative control indep/old {control['top1']} (limit {control['limit']:.1f}): "
          f"{'valid' if control['valid'] else 'INVALID RUN'}; results: {path}")


if __name__ == "__main__":
    main()
