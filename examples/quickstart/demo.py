"""qdrant-compat quickstart on real images (Omniglot) and the embedded Qdrant.

    make demo        # or: python examples/quickstart/demo.py [--out demo_output]

The story: train a v1 extractor, export it to ONNX, register it, index a gallery into a versioned
collection, query it, and see a query made with the wrong model refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from qdrant_compat import CompatClient, IncompatibleModelError, InputSpec, Registry
from qdrant_compat.data import load_npz, write_image_folder
from qdrant_compat.embedder import Embedder
from qdrant_compat.evaluation import evaluate_pair
from qdrant_compat.indexing import index_folder
from qdrant_compat.models import ModelConfig
from qdrant_compat.training import (
    TrainConfig,
    TrainingSummary,
    export_and_register,
    save_checkpoint,
    train_model,
)

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "data" / "omniglot_small.npz"
SPEC = InputSpec(size=28, channels=1, mean=(0.92,), std=(0.27,))
V1_CLASSES = 100


def step(title: str) -> None:
    print(f"\n== {title}")


def train_and_register(registry: Registry, src, out: Path, name: str, version: str, *, seed: int, epochs: int,
                       old=None, losses=None) -> None:
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, **({"losses": losses} if losses else {}))
    res = train_model(src, ModelConfig(backbone="smallcnn", in_channels=1, dim=64), cfg, SPEC, old=old)
    summary = TrainingSummary(
        input=SPEC, classes=list(src.classes), config={"epochs": epochs, "seed": seed}, history=res.history,
        seconds=res.seconds, parent=old.card.ref if old else None,
        parent_fingerprint=old.card.fingerprint if old else None, relation="bct" if old else None,
        synthesized_rows=len(old.synthesized) if old else 0, dataset="omniglot_small",
    )
    ckpt = save_checkpoint(out / "checkpoints" / f"{name}-{version}", res.model, summary)
    card, diff = export_and_register(ckpt, registry, name, version)
    print(f"trained {card.ref} on {len(src)} images / {len(src.classes)} classes in {res.seconds:.1f}s "
          f"(train acc {res.history[-1]['train_acc']:.2f}); ONNX parity {diff:.1e}; fingerprint {card.fingerprint[:12]}…")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo_output", help="working folder (recreated)")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.time()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    registry = Registry(out / "registry")

    step("1. data: Omniglot fixture (real handwritten characters)")
    train = load_npz(FIXTURE, "train")
    test = load_npz(FIXTURE, "test")
    v1_train = train.subset(np.flatnonzero(train.labels < V1_CLASSES))
    v1_train.classes = train.classes[:V1_CLASSES]
    gallery_idx = np.flatnonzero(test.labels < V1_CLASSES)
    gallery_dir = out / "gallery"
    write_image_folder(test, gallery_dir, gallery_idx)
    print(f"v1 training set: {len(v1_train)} images, {V1_CLASSES} classes; gallery: {len(gallery_idx)} images "
          f"of unseen drawers written to {gallery_dir}/<class>/<image>.png")

    step("2. train v1, export to ONNX, register")
    train_and_register(registry, v1_train, out, "omniglot", "1", seed=0, epochs=args.epochs)

    step("3. index the gallery into a versioned collection (embedded Qdrant)")
    client = CompatClient(path=str(out / "qdrant"), registry=registry)
    n = index_folder(client, "gallery", "omniglot@1", gallery_dir)
    info = client.info("gallery")
    v = info["vectors"]["omniglot@1"]
    print(f"indexed {n} images; collection metadata: vector 'omniglot@1' = {v['model']} "
          f"({v['fingerprint'][:12]}…), dim {v['dim']}, {v['distance']}, {v['points']} points")

    step("4. query the gallery (leave-one-out: each image searches the others)")
    recs = list(client.scroll_all("gallery", with_vectors=["omniglot@1"]))
    vecs = np.stack([r.vector["omniglot@1"] for r in recs])
    classes = [r.payload["class"] for r in recs]
    labels = np.unique(classes, return_inverse=True)[1]
    hits = client.query_batch("gallery", "omniglot@1", vecs, limit=2)
    ids = [r.id for r in recs]
    top1_qdrant = np.mean([
        labels[ids.index(next(h.id for h in hs if h.id != ids[i]))] == labels[i] for i, hs in enumerate(hits)
    ])
    m = evaluate_pair(vecs, vecs, labels)
    chance_top1 = 100.0 * (len(gallery_idx) / V1_CLASSES - 1) / (len(gallery_idx) - 1)
    print(f"top-1 through Qdrant: {100 * top1_qdrant:.1f}%   top-1 / top-5 / mAP (exact): {m['top1']:.1f} / "
          f"{m['top5']:.1f} / {m['mAP']:.1f}%   chance top-1: {chance_top1:.1f}%")
    example = gallery_dir / test.classes[int(test.labels[gallery_idx[0]])].replace("/", "_")
    first = sorted(example.iterdir())[0]
    res = client.query("gallery", "omniglot@1", Embedder(registry.get_model("omniglot@1")).embed([str(first)]), limit=3)
    print(f"search with {first.relative_to(out)}: " + ", ".join(f"{h.payload['class']} ({h.score:.2f})" for h in res))

    step("5. a query made by another model is refused, never silently wrong")
    train_and_register(registry, v1_train, out, "omniglot-indep", "2", seed=1, epochs=2)
    q = Embedder(registry.get_model("omniglot-indep@2")).embed([str(first)])
    try:
        client.query("gallery", "omniglot-indep@2", q)
        print("UNEXPECTED: the query was accepted")
        return 1
    except IncompatibleModelError as exc:
        print(f"refused: {exc}")
    print(f"\ndemo finished in {time.time() - t0:.0f}s")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
