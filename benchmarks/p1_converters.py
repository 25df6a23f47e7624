"""Benchmark: transformation heads on the P1 setting, plus system figures S2 (in-place conversion rate)
and S3 (routed query latency).

    python -m benchmarks.p1_converters [--seeds 0 1 2] [--epochs 30] [--data DIR] [--points 100000]

Old = Lite0 + head on classes 0-49, new = Lite2 + head on all 100 classes, trained independently. Heads
learn only from train-split pairs (MLP early stopping on a held-out 10% of them). Cells on the 5,000
validation images, leave-one-out: ``indep/convert:<kind>(old)`` (stored old vectors rewritten) and
``adapt:<kind>(indep)/old`` (new queries mapped into the old space).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import NEW_BACKBONE, OLD_BACKBONE, SEEN, collect_cells, mean_std, print_targets, write_results
from benchmarks.p1_bct import embed, split_data, train_head
from converters import create_converter
from qdrant_compat.bridges import fit_head
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.training import PLAIN_LOSSES, TrainConfig

log = logging.getLogger("benchmarks.p1_converters")
KINDS: dict[str, dict[str, Any]] = {
    "linear": {},
    "procrustes": {},
    "lowrank": {"rank": 64},
    "mlp": {"hidden": 512, "depth": 2, "epochs": 25, "batch_size": 1024, "patience": 4},
    "mlp+cls": {"hidden": 512, "depth": 2, "epochs": 25, "batch_size": 1024, "patience": 4, "class_weight": 0.5},
}


def run_seed(d: dict[str, Any], seed: int, epochs: int) -> dict[str, Any]:
    classes, y = d["classes"], d["y_tr"]
    seen = y < SEEN
    plain = TrainConfig(epochs=epochs, batch_size=512, lr=1e-3, seed=seed, losses=dict(PLAIN_LOSSES))
    old, _ = train_head(d["f0_tr"][seen], y[seen], classes[:SEEN], OLD_BACKBONE, plain)
    indep, _ = train_head(d["f2_tr"], y, classes, NEW_BACKBONE, plain)
    o_tr, n_tr = embed(old, d["f0_tr"]), embed(indep, d["f2_tr"])
    o_ev, n_ev = embed(old, d["f0_ev"]), embed(indep, d["f2_ev"])
    seen_set = set(range(SEEN))
    cells = {"old/old": evaluate_pair(o_ev, o_ev, d["y_ev"], seen_classes=seen_set),
             "indep/indep": evaluate_pair(n_ev, n_ev, d["y_ev"], seen_classes=seen_set)}
    fit_seconds: dict[str, float] = {}
    w_new = indep.classifier.weight.detach().numpy()
    w_old = old.classifier.weight.detach().numpy()  # the old model's classifier knows the seen classes only
    old_rows = np.where(seen, y, -1)  # -1: a class the old classifier does not know (no classification term)
    for name, opts in KINDS.items():
        kind = name.split("+")[0]
        # the same fitting function the CLI's 'converter fit' uses (labels only feed the classification term here:
        # holdout=0 keeps every pair for fitting, as before)
        t0 = time.perf_counter()
        fwd, _ = fit_head(kind, o_tr, n_tr, direction="old_to_new", labels=y, target_classifier=w_new, seed=seed,
                          options=opts, holdout=0.0)
        fit_seconds[f"convert:{name}"] = time.perf_counter() - t0
        cells[f"indep/convert:{name}(old)"] = evaluate_pair(n_ev, fwd.transform(o_ev), d["y_ev"], seen_classes=seen_set)
        t0 = time.perf_counter()
        back, _ = fit_head(kind, n_tr, o_tr, direction="new_to_old", labels=y, target_classifier=w_old,
                           classifier_rows=old_rows, seed=seed, options=opts, holdout=0.0)
        fit_seconds[f"adapt:{name}"] = time.perf_counter() - t0
        cells[f"adapt:{name}(indep)/old"] = evaluate_pair(back.transform(n_ev), o_ev, d["y_ev"], seen_classes=seen_set)
        log.info("seed %d %s: convert %.1f adapt %.1f", seed, name, cells[f"indep/convert:{name}(old)"]["top1"],
                 cells[f"adapt:{name}(indep)/old"]["top1"])
    return {"cells": cells, "fit_seconds": fit_seconds}


def system_figures(n_points: int, seed: int = 0) -> dict[str, float]:
    """S2: in-place conversion vs raw rewrite; S3: routed query vs raw query_points. Embedded Qdrant, 128-d."""
    from qdrant_client import QdrantClient, models

    from qdrant_compat import CompatClient, InputSpec, ModelCard, Registry
    from qdrant_compat.metadata import CompatMeta, VectorEntry
    from qdrant_compat.upgrade import run_upgrade

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(f"{tmp}/reg")
        spec = InputSpec(size=8, channels=1, mean=(0.5,), std=(0.5,))
        # two tiny registered "models" (the figures measure the data path, not extraction)
        import torch

        from qdrant_compat.export import export_module

        cards = []
        for v in ("1", "2"):
            torch.manual_seed(int(v))
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128))
            export_module(net, (1, 1, 8, 8), f"{tmp}/m{v}.onnx")
            cards.append(reg.register_model(f"{tmp}/m{v}.onnx", ModelCard(name="bench", version=v, dim=128, input=spec)))
        conv = create_converter("linear", dim_in=128, dim_out=128)
        x = rng.normal(size=(5000, 128))
        conv.fit(x, x @ np.linalg.qr(rng.normal(size=(128, 128)))[0], seed=seed)
        from qdrant_compat.bridges import fit_and_register

        cc = fit_and_register(reg, "bench@1", "bench@2", "linear", src=x, dst=conv.transform(x), conv_id="b12")
        q = QdrantClient(path=f"{tmp}/store")
        q.create_collection("c", vectors_config={"bench@1": models.VectorParams(size=128, distance=models.Distance.COSINE)})
        vecs = rng.normal(size=(n_points, 128)).astype(np.float32)
        for s in range(0, n_points, 2048):
            q.upsert("c", points=models.Batch(ids=list(range(s, min(n_points, s + 2048))),
                                              vectors={"bench@1": vecs[s : s + 2048].tolist()},
                                              payloads=[{"k": i} for i in range(s, min(n_points, s + 2048))]), wait=True)
        meta = CompatMeta(vectors={"bench@1": VectorEntry.for_card(cards[0])}, read="bench@1", write=["bench@1"])
        q.update_collection("c", metadata={"qdrant_compat": meta.to_dict()})
        batch = 1024
        # raw rewrite: scroll + update_vectors into another named vector, no transform
        q.create_vector_name("c", "raw", models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=128, distance=models.Distance.COSINE)))
        t0 = time.perf_counter()
        offset = None
        while True:
            recs, offset = q.scroll("c", limit=batch, offset=offset, with_vectors=["bench@1"], with_payload=False)
            q.update_vectors("c", points=[models.PointVectors(id=r.id, vector={"raw": r.vector["bench@1"]}) for r in recs], wait=True)
            if offset is None:
                break
        raw_rate = n_points / (time.perf_counter() - t0)
        client = CompatClient(q, registry=reg)
        t0 = time.perf_counter()
        rep = run_upgrade(client, "c", "bench@2", strategy="convert", converter=cc.id, batch_size=batch)
        conv_rate = n_points / (time.perf_counter() - t0)
        assert rep.remaining == 0
        # S3: query latency, same collection, on the (now active after cutover) converted vector
        from qdrant_compat.upgrade import cutover

        cutover(client, "c")
        qs = rng.normal(size=(60, 128)).astype(np.float32)
        raw_t, routed_t = [], []
        for v in qs:  # interleaved so machine noise hits both alike
            t = time.perf_counter()
            q.query_points("c", query=v.tolist(), using="bench@2", limit=10)
            raw_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.query("c", "bench@2", v, limit=10, with_payload=False)
            routed_t.append(time.perf_counter() - t)
        q.close()
    return {"S2_points": n_points, "S2_raw_rate": raw_rate, "S2_convert_rate": conv_rate, "S2_ratio": conv_rate / raw_rate,
            "S3_raw_median_ms": 1000 * statistics.median(raw_t), "S3_routed_median_ms": 1000 * statistics.median(routed_t),
            "S3_ratio": statistics.median(routed_t) / statistics.median(raw_t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--points", type=int, default=100_000, help="collection size for S2/S3")
    ap.add_argument("--no-system", action="store_true")
    ap.add_argument("--eval-on", choices=["val", "holdout"], default="val")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    d = split_data(args)
    runs = [run_seed(d, s, args.epochs) for s in args.seeds]
    cells = collect_cells(runs)
    ii = {k: np.asarray(cells["indep/indep"][k]) for k in ("top1", "mAP")}
    oo = np.asarray(cells["old/old"]["top1"])
    derived: dict[str, Any] = {}
    for name in KINDS:
        c = cells[f"indep/convert:{name}(old)"]
        a = cells[f"adapt:{name}(indep)/old"]
        derived[name] = {
            "retention_top1": (np.asarray(c["top1"]) / ii["top1"]).tolist(),
            "retention_mAP": (np.asarray(c["mAP"]) / ii["mAP"]).tolist(),
            "adapter_gain": (np.asarray(a["top1"]) - oo).tolist(),
            "fit_seconds_convert": float(np.mean([r["fit_seconds"][f"convert:{name}"] for r in runs])),
            "fit_seconds_adapt": float(np.mean([r["fit_seconds"][f"adapt:{name}"] for r in runs])),
        }
    best_ret = max(KINDS, key=lambda k: np.mean(derived[k]["retention_top1"]))
    best_gain = max(KINDS, key=lambda k: np.mean(derived[k]["adapter_gain"]))
    targets: dict[str, Any] = {
        "Q4": {"met": bool(np.mean(derived[best_ret]["retention_top1"]) >= 0.95 and np.mean(derived[best_ret]["retention_mAP"]) >= 0.95),
               "value": {"head": best_ret, "top1": float(np.mean(derived[best_ret]["retention_top1"])),
                         "mAP": float(np.mean(derived[best_ret]["retention_mAP"]))}},
        "Q5": {"met": bool(np.mean(derived[best_gain]["adapter_gain"]) >= 1.0),
               "value": {"head": best_gain, "gain": float(np.mean(derived[best_gain]["adapter_gain"]))}},
    }
    system: dict[str, float] = {}
    if not args.no_system:
        system = system_figures(args.points)
        targets["S2"] = {"met": bool(system["S2_ratio"] >= 0.8), "value": system["S2_ratio"]}
        targets["S3"] = {"met": bool(system["S3_ratio"] <= 1.1), "value": system["S3_ratio"]}
    path = write_results("p1_converters.json" if args.eval_on == "val" else "p1_converters_holdout.json",
                         {"protocol": "P1", "seeds": args.seeds, "epochs": args.epochs, "heads": KINDS, "cells": cells,
                          "derived": derived, "system": system, "targets": targets})
    print(f"\n### P1 transformation heads (seeds {args.seeds})\n")
    print("| cell | top-1 | mAP | retention top-1 | retention mAP | adapter gain | fit s (convert/adapt) |")
    print("|---|---|---|---|---|---|---|")
    for c in ("old/old", "indep/indep"):
        print(f"| {c} | {mean_std(cells[c]['top1'])} | {mean_std(cells[c]['mAP'])} | | | | |")
    for name in KINDS:
        c, a, dd = cells[f"indep/convert:{name}(old)"], cells[f"adapt:{name}(indep)/old"], derived[name]
        print(f"| indep/convert:{name}(old) | {mean_std(c['top1'])} | {mean_std(c['mAP'])} | "
              f"{np.mean(dd['retention_top1']):.3f} | {np.mean(dd['retention_mAP']):.3f} | | {dd['fit_seconds_convert']:.1f} |")
        print(f"| adapt:{name}(indep)/old | {mean_std(a['top1'])} | {mean_std(a['mAP'])} | | | "
              f"{np.mean(dd['adapter_gain']):+.1f} | {dd['fit_seconds_adapt']:.1f} |")
    print_targets(targets)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
