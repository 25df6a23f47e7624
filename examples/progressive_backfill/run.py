"""Priority backfill while queries run (Omniglot, embedded Qdrant), with the recall curve plotted.

    python examples/progressive_backfill/run.py [--out backfill_output] [--epochs 8]

v1 indexed the gallery; v2 is trained backward-compatibly with v1 (so new queries reach unfilled points
through the bct edge). The gallery is re-extracted with v2 in steps, twice (random order, then the
project's priority order); after every step the same v2 queries run through CompatClient, which merges
the filled points (new vectors) and the rest (old vectors) by score.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("demo", HERE.parent / "quickstart" / "demo.py")
demo = importlib.util.module_from_spec(_spec)  # reuse the quickstart's helpers
_spec.loader.exec_module(demo)  # type: ignore[union-attr]

from qdrant_compat import CompatClient, Registry  # noqa: E402
from qdrant_compat.data import ImageFolder, load_npz, write_image_folder  # noqa: E402
from qdrant_compat.evaluation import evaluate_registered, record_bct_evidence  # noqa: E402
from qdrant_compat.evaluation.plots import curves  # noqa: E402
from qdrant_compat.indexing import index_folder  # noqa: E402
from qdrant_compat.training import prepare_old_targets  # noqa: E402
from qdrant_compat.upgrade import run_upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default="backfill_output")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    registry = Registry(out / "registry")
    train, test = load_npz(demo.FIXTURE, "train"), load_npz(demo.FIXTURE, "test")
    write_image_folder(test, out / "gallery", np.flatnonzero(test.labels < demo.V2_CLASSES))
    paths = ImageFolder(out / "gallery").paths
    demo.train_and_register(registry, demo.first_classes(train, demo.V1_CLASSES), out, "omniglot", "1", seed=0, epochs=args.epochs)
    v2_train = demo.first_classes(train, demo.V2_CLASSES)
    old = prepare_old_targets(registry.get_model("omniglot@1"), v2_train)
    demo.train_and_register(registry, v2_train, out, "omniglot", "2", seed=0, epochs=args.epochs, old=old)
    rep, emb = evaluate_registered(registry, ["omniglot@1", "omniglot@2"], demo.first_classes(test, demo.V2_CLASSES))
    record_bct_evidence(registry, "omniglot@2", rep, emb)
    client = CompatClient(path=str(out / "qdrant"), registry=registry)
    series = {}
    baseline = None
    for order in ("random", "uncertainty"):
        coll = f"gallery-{order}"
        index_folder(client, coll, "omniglot@1", out / "gallery")
        baseline = demo.top1_through_qdrant(client, coll, "omniglot@1", paths)
        per = int(np.ceil(len(paths) / args.steps))
        xs, ys = [0.0], []
        run_upgrade(client, coll, "omniglot@2", strategy="backfill", priority=order, batch_size=per, max_batches=0)
        ys.append(demo.top1_through_qdrant(client, coll, "omniglot@2", paths))
        for _ in range(args.steps):
            run_upgrade(client, coll, batch_size=per, max_batches=1, priority=order)
            xs.append(client.count_with_vector(coll, "omniglot@2") / len(paths))
            ys.append(demo.top1_through_qdrant(client, coll, "omniglot@2", paths))
        series["priority" if order == "uncertainty" else "random"] = (xs, ys)
        print(f"{order:>11}: " + "  ".join(f"{100 * x:.0f}%:{y:.1f}" for x, y in zip(xs, ys, strict=True)))
    print(f"old/old (v1 queries): {baseline:.1f}")
    png = curves(series, out / "backfill_curve.png", baseline=baseline, title="Omniglot: v2 queries while backfilling")
    print(f"curve: {png}")
    client.close()


if __name__ == "__main__":
    main()
