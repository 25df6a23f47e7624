"""Q7, second attempt (P1 protocol, one seed): label-free loss mixes and target constructions side by side.

    python -m benchmarks.p1_nolabel_variants [--seeds 0] [--epochs 30] [--data DIR]

Every variant trains the new (Lite2) head without reading a label, against the same old (Lite0) head, and
is scored on the 5,000 validation images: new/old, new/new and the margin over old/old (seen/new split).

* ``default``: the library's ``NOLABEL_LOSSES`` (instance contrast + self-distillation + cross-model relations);
* ``raml*``: point-wise alignment plus cross-model relations (RAML-style; D3still reports a point-wise term is
  what asymmetric retrieval needs), at several weights and with the backbone's own relations;
* ``knn_smoothed``: the point-wise target replaced by the old embedding averaged over the image's 10 nearest
  neighbours in the new backbone's feature space (a denoised target, if those neighbours share classes);
* ``old_pseudo_labels``: the old classifier's argmax as labels and the labelled BCT losses (no human label; the
  new classes' images are forced onto the 50 old ones).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import NEW_BACKBONE, SEEN, p1_parser, write_results
from benchmarks.p1_bct import embed, split_data, train_head
from benchmarks.p1_nolabel import old_side
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.training import BCT_LOSSES, NOLABEL_LOSSES, build_old_targets, unlabelled_old_targets

log = logging.getLogger("benchmarks.p1_nolabel_variants")
LOSS_MIXES: dict[str, dict[str, float]] = {
    "default": dict(NOLABEL_LOSSES),
    "raml": {"alignment": 4.0, "cross_distill": 4.0},
    "raml_alignment8": {"alignment": 8.0, "cross_distill": 4.0},
    "raml_self_distill": {"alignment": 4.0, "cross_distill": 4.0, "self_distill": 1.0},
    "raml_relations8": {"alignment": 2.0, "cross_distill": 8.0},
    "knn_smoothed": {"alignment": 4.0, "instance_contrastive": 1.0, "cross_distill": 4.0},
}


def knn_smoothed(old_emb: np.ndarray, feats: np.ndarray, k: int = 10) -> np.ndarray:
    """Each image's old embedding plus those of its ``k`` nearest neighbours in ``feats``, renormalised."""
    f = torch.nn.functional.normalize(torch.from_numpy(feats), dim=1)
    o = torch.from_numpy(old_emb)
    out = torch.empty_like(o)
    for s in range(0, len(f), 2048):
        sim = f[s : s + 2048] @ f.t()
        sim[torch.arange(len(sim)), torch.arange(s, s + len(sim))] = -2.0  # not itself
        out[s : s + 2048] = o[s : s + 2048] + o[sim.topk(k, dim=1).indices].sum(1)
    return torch.nn.functional.normalize(out, dim=1).numpy()


def run_seed(d: dict[str, Any], seed: int, epochs: int, batch: int) -> dict[str, Any]:
    classes, y = d["classes"], d["y_tr"]
    cfg, old, o_tr, card = old_side(d, seed, epochs, batch)
    o_ev = embed(old, d["f0_ev"])
    score = {"seen_classes": set(range(SEEN))}
    oo = evaluate_pair(o_ev, o_ev, d["y_ev"], **score)
    out: dict[str, Any] = {"old/old": {k: oo[k] for k in ("top1", "top1_seen", "top1_new", "mAP")}, "variants": {}}
    unlabelled = np.zeros_like(y)  # what the label-free variants are handed: never read (no_labels=True)
    for name, losses in [*LOSS_MIXES.items(), ("old_pseudo_labels", dict(BCT_LOSSES))]:
        t0 = time.perf_counter()
        if name == "old_pseudo_labels":
            w = old.classifier.weight.detach().numpy()
            pseudo = (o_tr @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T).argmax(1)
            m, _ = train_head(d["f2_tr"], pseudo, classes[:SEEN], NEW_BACKBONE, cfg(losses),
                              old=build_old_targets(card, w, pseudo, classes[:SEEN], o_tr))
        else:
            target = knn_smoothed(o_tr, d["f2_tr"]) if name == "knn_smoothed" else o_tr
            m, _ = train_head(d["f2_tr"], unlabelled, classes, NEW_BACKBONE, cfg(losses, no_labels=True),
                              old=unlabelled_old_targets(card, target))
        e = embed(m, d["f2_ev"])
        no, nn_ = evaluate_pair(e, o_ev, d["y_ev"], **score), evaluate_pair(e, e, d["y_ev"], **score)
        out["variants"][name] = {"losses": losses, "new_old": no["top1"], "new_old_seen": no["top1_seen"],
                                 "new_old_new": no["top1_new"], "new_new": nn_["top1"], "margin": no["top1"] - oo["top1"],
                                 "seconds": time.perf_counter() - t0}
        log.info("seed %d %s: new/old %.2f new/new %.2f margin %+.2f", seed, name, no["top1"], nn_["top1"],
                 no["top1"] - oo["top1"])
    return out


def main() -> None:
    ap = p1_parser(__doc__, eval_on=False)
    ap.set_defaults(seeds=[0])
    args = ap.parse_args()
    args.eval_on = "val"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    d = split_data(args)
    runs = {str(s): run_seed(d, s, args.epochs, args.batch_size) for s in args.seeds}
    best = max(runs[str(args.seeds[0])]["variants"].items(), key=lambda kv: kv[1]["margin"])
    path = write_results("p1_nolabel_variants.json", {"protocol": "P1", "epochs": args.epochs, "seeds": runs,
                                                      "best": {"variant": best[0], "margin": best[1]["margin"]},
                                                      # Q7 is judged by p1_nolabel.py over three seeds; this only ranks mixes
                                                      "q7_candidate": best[1]["margin"] > 0})
    print("\n| variant | new/old | seen | new | new/new | margin vs old/old |\n|---|---|---|---|---|---|")
    for s, r in runs.items():
        for name, v in r["variants"].items():
            print(f"| {name} (seed {s}) | {v['new_old']:.2f} | {v['new_old_seen']:.1f} | {v['new_old_new']:.1f} | "
                  f"{v['new_new']:.2f} | {v['margin']:+.2f} |")
    print(f"\nold/old {runs[str(args.seeds[0])]['old/old']['top1']:.2f}; results: {path}")


if __name__ == "__main__":
    main()
