"""S8: backfill on Ray Data with 1 and 2 embedding actors, and the plan for 10M images on N machines.

    python -m benchmarks.s8_ray_scaling [--images 1500] [--batch-size 128] [--repeats 2] [--hours 24]

Same world as S7 (the Omniglot fixture's images as PNG files, the P1 Lite0 extractor, an in-memory
embedded store). Per variant, median of ``--repeats`` fresh collections: ``upgrade run`` backfill with the
local engine (in line, and the 2-thread pipeline) and with ``--engine ray`` on a local Ray (2 CPUs) with 1
and 2 actors. Then the same 2-actor run on an embedded store on disk (the only kind another process can
open) with the driver writing and with the workers writing (``--ray-writes workers``: one write actor).
Ray's start-up (``ray.init``) is measured once and not counted in the per-run figures.

It also measures the driver's memory per pending point (``tracemalloc``, 20,000 points with the Lite0
extractor's 128-d vectors, uncertainty order): what the backfill queue keeps now (vectors dropped once
scored) against keeping the scrolled records whole (before).

From the measured figures it writes the arithmetic for 10M images: the per-core cost of one image
(decode + embed), the cores for ``--hours``, the write rate the Qdrant cluster must absorb, the ceiling of
one driver writing (the measured write seconds per batch), and shard / batch sizes. A multi-node cluster
could not be run here: those rows are a plan, marked not run.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import print_targets, write_results
from benchmarks.s7_backfill_throughput import build, fresh_collection

IMAGES_10M = 10_000_000


def run_once(registry: Any, paths: list[str], batch: int, engine: Any, read_workers: int,
             disk: Path | None = None) -> dict[str, Any]:
    import shutil

    from qdrant_compat.upgrade import run_upgrade

    if disk is not None:
        shutil.rmtree(disk, ignore_errors=True)
    client = fresh_collection(registry, paths, str(disk) if disk is not None else None)
    t0 = time.perf_counter()
    rep = run_upgrade(client, "g", "lite0@1", strategy="backfill", priority="id", batch_size=batch,
                      read_workers=read_workers, engine=engine)
    seconds = time.perf_counter() - t0
    assert rep.remaining == 0 and rep.job is not None and rep.job.counts["extracted"] == len(paths)
    vecs = {r.id: r.vector["lite0@1"] for r in client.scroll_all("g", with_vectors=["lite0@1"])}
    client.close()
    return {"rate": len(paths) / seconds, "seconds": seconds, "stages": rep.stage_seconds, "vectors": vecs}


def driver_memory(registry: Any, n: int = 20_000) -> dict[str, float]:
    """Bytes the driver holds per pending point while a backfill runs: now, and with the vectors kept (before)."""
    import gc
    import tracemalloc

    import numpy as np

    from qdrant_compat import CompatClient
    from qdrant_compat.enums import Priority, Strategy
    from qdrant_compat.upgrade.fill import _backfill_queue, _pending
    from qdrant_compat.upgrade.state import JobState

    client = CompatClient(location=":memory:", registry=registry)
    client.create_collection("g", "lite0@1")
    vecs = np.random.default_rng(0).normal(size=(n, 128)).astype(np.float32)
    client.upsert("g", "lite0@1", vecs, ids=list(range(n)),
                  payloads=[{"image_path": f"s3://bucket/gallery/{i:09d}.jpg"} for i in range(n)], batch_size=2048)
    job = JobState(id="m", source="lite0@1", source_model="lite0@1", target="next@2", target_model="next@2",
                   target_fingerprint="",
                   strategy=Strategy.BACKFILL, priority=Priority.UNCERTAINTY, image_field="image_path")
    out = {}
    for name in ("now", "before"):
        gc.collect()
        tracemalloc.start()
        if name == "now":
            held: Any = _backfill_queue(client, "g", job, lambda r: True, 0)
        else:
            held = [r for page in _pending(client, "g", job, need=lambda r: True, payload=["image_path"], batch=1024)
                    for r in page]
        gc.collect()
        out[f"{name}_bytes_per_point"] = tracemalloc.get_traced_memory()[0] / n
        tracemalloc.stop()
        del held
    client.close()
    return out


def plan_10m(per_image_core_s: float, write_s_per_batch: float, batch: int, hours: float,
             bytes_per_point: float) -> dict[str, Any]:
    """The arithmetic for 10M images (nothing here was run on a cluster)."""
    need = IMAGES_10M / (hours * 3600)
    cores = need * per_image_core_s
    return {
        "images": IMAGES_10M, "hours": hours, "images_per_s_needed": need,
        "per_image_core_seconds": per_image_core_s,
        "cores_needed": cores, "machines_of_16_cores": cores / 16,
        "qdrant_point_updates_per_s": need, "qdrant_batch_requests_per_s": need / batch,
        "one_driver_write_ceiling_images_per_s": batch / write_s_per_batch if write_s_per_batch else None,
        # --ray-writes workers (the default against a server): each write actor has that ceiling, the driver
        # only folds marks; the measured write is the embedded store's, a stand-in for a server's round trip
        "write_actors_needed": need * write_s_per_batch / batch if write_s_per_batch else None,
        "batch_size": batch,
        "driver_memory_gb_for_the_queue": IMAGES_10M * bytes_per_point / 1e9,
        "shards": "4 (2 per node on 2 nodes; ~2.5M points per shard); replication 2 for the switch-over",
        "status": "plan, not run (no multi-node cluster here)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hours", type=float, default=24.0, help="The window the 10M-image plan must fit.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from qdrant_compat.engines.ray_data import RayEngine

    engines = {w: RayEngine(workers=w, num_cpus=2, object_store_mb=300, writes="driver") for w in (1, 2)}
    t0 = time.perf_counter()
    engines[1].connect()
    ray_init_s = time.perf_counter() - t0
    workers_write = RayEngine(workers=2, num_cpus=2, object_store_mb=300, writes="workers")
    variants: dict[str, tuple[Any, int, bool]] = {
        "local, in line": (None, 0, False), "local, pipeline (2 read threads)": (None, 2, False),
        "ray, 1 actor": (engines[1], 0, False), "ray, 2 actors": (engines[2], 0, False),
        "ray, 2 actors, on disk, driver writes": (engines[2], 0, True),
        "ray, 2 actors, on disk, workers write": (workers_write, 0, True)}
    with tempfile.TemporaryDirectory() as d:
        registry, paths = build(Path(d), args.images)
        memory = driver_memory(registry)
        print(f"driver memory per pending point: {memory}", flush=True)
        run_once(registry, paths[:256], args.batch_size, engines[2], 0)  # warm Ray's workers once, not counted
        # every run below is compared with the first local one: the same vectors for every point
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
        for r in range(args.repeats):
            for name, (eng, rw, on_disk) in variants.items():
                runs[name].append(run_once(registry, paths, args.batch_size, eng, rw,
                                           Path(d) / "store" if on_disk else None))
            print(f"repeat {r}: " + ", ".join(f"{k}: {v[-1]['rate']:.0f} img/s" for k, v in runs.items()), flush=True)
    engines[1].shutdown()
    import numpy as np

    ref = runs["local, in line"][0]["vectors"]
    equal = all(r["vectors"].keys() == ref.keys() and all(np.allclose(r["vectors"][k], ref[k], atol=1e-5) for k in ref)
                for v in runs.values() for r in v)
    for v in runs.values():
        for r in v:
            del r["vectors"]
    figures = {k: {"images_per_s": statistics.median(x["rate"] for x in v), "runs": v} for k, v in runs.items()}
    inline = statistics.median(x["stages"]["read"] + x["stages"]["embed"] for x in runs["local, in line"])
    # in line, one image costs read (one thread) + embed (ONNX Runtime on both cores): in core-seconds
    per_core = statistics.median((x["stages"]["read"] + 2 * x["stages"]["embed"]) / args.images
                                 for x in runs["local, in line"])
    n_batches = -(-args.images // args.batch_size)
    write_per_batch = statistics.median(x["stages"]["write"] for x in runs["ray, 2 actors"]) / n_batches
    scaling = figures["ray, 2 actors"]["images_per_s"] / figures["ray, 1 actor"]["images_per_s"]
    plan = plan_10m(per_core, write_per_batch, 256, args.hours, memory["now_bytes_per_point"])
    targets = {"S8": {"met": bool(equal), "value": {"ray_2_over_1": round(scaling, 2), "equal_to_local": equal,
                                                    "sizing": "written (plan_10m)"}}}
    path = write_results("s8_ray_scaling.json", {"images": args.images, "batch_size": args.batch_size,
                                                 "repeats": args.repeats, "ray_init_seconds": ray_init_s,
                                                 "figures": figures, "inline_busy_seconds": inline,
                                                 "write_seconds_per_batch": write_per_batch, "plan_10m": plan,
                                                 "driver_memory": memory,
                                                 "targets": targets})
    print(f"\nray.init: {ray_init_s:.1f}s (once; not in the figures)\n\n| variant | images/s |\n|---|---|")
    for k, f in figures.items():
        print(f"| {k} | {f['images_per_s']:.0f} |")
    print(f"\n2 actors / 1 actor: x{scaling:.2f}\n\n10M images in {args.hours:.0f} h (plan, not run):")
    for k, v in plan.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    print_targets(targets)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
