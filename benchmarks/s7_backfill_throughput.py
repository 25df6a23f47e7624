"""S7: backfill throughput end to end (read, decode, embed, write) against the model's own limit.

    python -m benchmarks.s7_backfill_throughput [--images 1500] [--batch-size 128] [--repeats 3]

The Omniglot fixture's test images as PNG files, the P1 Lite0 extractor (frozen EfficientNet-Lite0 + a
128-d head, 64 px, exported to ONNX and registered), an in-memory embedded store whose points reference the
images. Figures, median of ``--repeats``:

* limit: ONNX Runtime on already preprocessed tensors at the same batch size (nothing else);
* ``upgrade run`` backfill with ``read_workers=0`` (read, embed, write one after another: the loop before
  the pipeline) and with 1 and 2 read workers (the pipeline), each from a fresh collection;
* busy seconds per stage (read+decode+preprocess, embed, write) of each run;
* ``index`` of the gallery folder into a new collection, in line (``read_workers=0``) and pipelined (2).

Target S7: pipelined end-to-end images/s >= 0.8 x the limit.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, print_targets, write_results

log = logging.getLogger("benchmarks.s7")


def build(tmp: Path, n_images: int) -> tuple[Any, list[str]]:
    import torch

    from benchmarks.common import LITE_SPEC
    from qdrant_compat import InputSpec, ModelCard, Registry
    from qdrant_compat.data import load_npz, write_image_folder
    from qdrant_compat.export import export_module
    from qdrant_compat.models import EmbeddingModel, ModelConfig
    from qdrant_compat.training import TrainingSummary, export_and_register, save_checkpoint

    src = load_npz(ROOT / "examples" / "data" / "omniglot_small.npz", "test")
    paths = [str(p.resolve()) for p in write_image_folder(src, tmp / "gallery", range(min(n_images, len(src))))]
    while len(paths) < n_images:  # the fixture's test split is small: reference images more than once
        paths += paths[: n_images - len(paths)]
    registry = Registry(tmp / "reg")
    torch.manual_seed(0)
    v1 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 32))
    export_module(v1, (1, 3, 8, 8), tmp / "v1.onnx")
    registry.register_model(tmp / "v1.onnx", ModelCard(name="v", version="1", dim=32,
                                                        input=InputSpec(size=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)))
    model = EmbeddingModel(ModelConfig(backbone="efficientnet-lite0", freeze_backbone=True, dim=128, num_classes=10))
    ckpt = save_checkpoint(tmp / "lite0", model, TrainingSummary(input=LITE_SPEC, classes=[str(i) for i in range(10)]))
    export_and_register(ckpt, registry, "lite0", "1")
    return registry, paths


def fresh_collection(registry: Any, paths: list[str], path: str | None = None) -> Any:
    """Collection 'g' of ``paths`` in memory, or in an embedded store on disk at ``path``."""
    from qdrant_compat import CompatClient

    client = CompatClient(path=path, registry=registry) if path else CompatClient(location=":memory:", registry=registry)
    client.create_collection("g", "v@1")
    vecs = np.random.default_rng(0).normal(size=(len(paths), 32)).astype(np.float32)
    client.upsert("g", "v@1", vecs, ids=list(range(len(paths))), payloads=[{"image_path": p} for p in paths],
                  batch_size=1024)
    return client


def limit_rate(registry: Any, paths: list[str], batch: int) -> float:
    from qdrant_compat.data.images import load_image
    from qdrant_compat.data.transforms import preprocess
    from qdrant_compat.runtime.embedder import Embedder

    emb = Embedder(registry.get_model("lite0@1"), batch_size=batch)
    x = preprocess([load_image(p) for p in paths], emb.card.input)
    emb.embed_tensor(x[:batch])  # warm-up
    t0 = time.perf_counter()
    emb.embed_tensor(x)
    return len(x) / (time.perf_counter() - t0)


def backfill_rate(registry: Any, paths: list[str], batch: int, workers: int) -> dict[str, Any]:
    from qdrant_compat.upgrade import run_upgrade

    client = fresh_collection(registry, paths)
    rep = run_upgrade(client, "g", "lite0@1", strategy="backfill", priority="id", batch_size=batch, read_workers=workers)
    assert rep.remaining == 0 and rep.job is not None and rep.job.counts["extracted"] == len(paths)
    client.close()
    return {"rate": len(paths) / rep.seconds, "seconds": rep.seconds, "stages": rep.stage_seconds}


def index_rate(registry: Any, folder: Path, batch: int, workers: int) -> dict[str, Any]:
    from qdrant_compat import CompatClient
    from qdrant_compat.indexing import index_folder

    client = CompatClient(location=":memory:", registry=registry)
    t0 = time.perf_counter()
    n = index_folder(client, "i", "lite0@1", folder, batch_size=batch, read_workers=workers)
    seconds = time.perf_counter() - t0
    client.close()
    return {"rate": n / seconds, "seconds": seconds, "images": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory() as d:
        registry, paths = build(Path(d), args.images)
        limit, runs = [], {w: [] for w in (0, 1, 2)}
        index_runs: dict[int, list[dict[str, Any]]] = {0: [], 2: []}
        for r in range(args.repeats):  # interleaved, so machine noise hits every variant alike
            limit.append(limit_rate(registry, paths, args.batch_size))
            for w in runs:
                runs[w].append(backfill_rate(registry, paths, args.batch_size, w))
            for w in index_runs:
                index_runs[w].append(index_rate(registry, Path(d) / "gallery", args.batch_size, w))
            print(f"repeat {r}: limit {limit[-1]:.0f} img/s; " + ", ".join(
                f"workers={w}: {runs[w][-1]['rate']:.0f} img/s" for w in runs) + "; index " + ", ".join(
                f"workers={w}: {index_runs[w][-1]['rate']:.0f} img/s" for w in index_runs), flush=True)
    lim = statistics.median(limit)
    figures = {}
    for w, rs in runs.items():
        rate = statistics.median(r["rate"] for r in rs)
        stages = {k: statistics.median(r["stages"][k] for r in rs) for k in rs[0]["stages"]}
        figures[f"read_workers={w}"] = {"images_per_s": rate, "ratio_to_limit": rate / lim, "stage_seconds": stages,
                                        "runs": rs}
    index = {f"read_workers={w}": {"images_per_s": statistics.median(r["rate"] for r in rs), "runs": rs}
             for w, rs in index_runs.items()}
    best = max(figures, key=lambda k: figures[k]["images_per_s"])
    targets = {"S7": {"met": bool(figures[best]["ratio_to_limit"] >= 0.8),
                      "value": {"variant": best, "ratio": figures[best]["ratio_to_limit"],
                                "before_ratio": figures["read_workers=0"]["ratio_to_limit"]}}}
    path = write_results("s7_backfill_throughput.json", {"images": args.images, "batch_size": args.batch_size,
                                                         "repeats": args.repeats, "limit_images_per_s": lim,
                                                         "limit_runs": limit, "figures": figures, "index": index,
                                                         "targets": targets})
    print(f"\n| variant | images/s | x limit | read s | embed s | write s |\n|---|---|---|---|---|---|\n"
          f"| ONNX Runtime on preprocessed tensors (limit) | {lim:.0f} | 1.00 | | | |")
    for k, f in figures.items():
        st = f["stage_seconds"]
        print(f"| backfill, {k} | {f['images_per_s']:.0f} | {f['ratio_to_limit']:.2f} | {st.get('read', 0):.1f} | "
              f"{st.get('embed', 0):.1f} | {st.get('write', 0):.1f} |")
    for k, f in index.items():
        print(f"| index, {k} | {f['images_per_s']:.0f} | {f['images_per_s'] / lim:.2f} | | | |")
    print_targets(targets)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
