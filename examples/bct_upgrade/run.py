"""BCT upgrade on Tiny-ImageNet (P1): an old Lite0 model's gallery serves a new Lite2 model, never re-indexed.

    python examples/bct_upgrade/run.py [--data DIR] [--work bct_upgrade_output]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from p1_models import NEW_BACKBONE, OLD_BACKBONE, SEEN, load, old_targets, top1_through_qdrant, train_register  # noqa: E402

from qdrant_compat import CompatClient, Registry  # noqa: E402
from qdrant_compat.evaluation import CompatibilityReport, evaluate_pair, record_bct_evidence  # noqa: E402
from qdrant_compat.runtime.embedder import Embedder  # noqa: E402
from qdrant_compat.upgrade import plan_upgrade, run_upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--work", default="bct_upgrade_output")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    registry = Registry(work / "registry")
    train, test, f = load(args.data)
    y, classes = np.asarray(train.labels), [str(c) for c in train.classes]
    seen = y < SEEN
    print("1. old model: EfficientNet-Lite0 (frozen) + 128-d head, trained on classes 0-49")
    old = train_register(registry, work, "tin", "1", OLD_BACKBONE, f[OLD_BACKBONE]["train"][seen], y[seen], classes[:SEEN],
                         epochs=args.epochs)
    print("2. index the 5,000 validation images with the old model's ONNX file (embedded Qdrant)")
    client = CompatClient(path=str(work / "qdrant"), registry=registry)
    client.create_collection("gallery", "tin@1")
    emb_old = Embedder(registry.get_model("tin@1"), batch_size=128).embed_source(test)
    yv = np.asarray(test.labels)
    client.upsert("gallery", "tin@1", emb_old, ids=list(range(len(yv))), payloads=[{"label": int(v)} for v in yv])
    print("3. new model: EfficientNet-Lite2 (frozen) + head on all 100 classes, backward-compatible with tin@1")
    tg = old_targets(registry, "tin@1", old, f[OLD_BACKBONE]["train"], y, classes)
    train_register(registry, work, "tin", "2", NEW_BACKBONE, f[NEW_BACKBONE]["train"], y, classes, epochs=args.epochs, old=tg)
    emb_new = Embedder(registry.get_model("tin@2"), batch_size=128).embed_source(test)
    rep = CompatibilityReport(cells={
        "tin@1/tin@1": evaluate_pair(emb_old, emb_old, yv, seen_classes=set(range(SEEN))),
        "tin@2/tin@1": evaluate_pair(emb_new, emb_old, yv, seen_classes=set(range(SEEN))),
        "tin@2/tin@2": evaluate_pair(emb_new, emb_new, yv, seen_classes=set(range(SEEN))),
    })
    ev = record_bct_evidence(registry, "tin@2", rep, {"tin@1": emb_old, "tin@2": emb_new}).lineage.evidence
    for k, m in rep.cells.items():
        print(f"   {k:<12} top-1 {m['top1']:.1f} (seen {m['top1_seen']:.1f}, new {m['top1_new']:.1f})")
    print(f"   criterion new/old > old/old: {'met' if ev['criterion_met'] else 'NOT met'}")
    print("4. upgrade plan and run (no vector is rewritten when the edge holds)")
    plan = plan_upgrade(client, "gallery", "tin@2")
    print(f"   {plan.strategy}: {plan.reasons[-1]}")
    if plan.strategy == "adopt":
        run_upgrade(client, "gallery", "tin@2")
        print(f"   new queries on the untouched gallery through Qdrant: top-1 {top1_through_qdrant(client, 'gallery', 'tin@2', emb_new, yv):.1f}"
              f" (old queries: {top1_through_qdrant(client, 'gallery', 'tin@1', emb_old, yv):.1f})")
    client.close()


if __name__ == "__main__":
    main()
