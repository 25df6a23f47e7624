"""S6: cold start of the serving side: ``qdrant-compat --help`` and a one-image ``search`` in fresh processes.

    python -m benchmarks.s6_cold_start [--runs 5] [--code-root DIR] [--label NAME]

Each figure is the median wall time of ``--runs`` fresh Python processes (2 cores here). The world (a
small registered model, an embedded store with 300 indexed Omniglot images) is built once, outside the
timing. ``--code-root`` times another checkout of the package on the same world (the figures *before*
a change); the modules each command imported are recorded too (torch must not be among them).
Targets: ``--help`` <= 0.5 s, ``search`` <= 1.5 s, no torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, print_targets, write_results

log = logging.getLogger("benchmarks.s6_cold_start")
PROBE = "import atexit, sys; atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'torchvision', 'onnx', " \
        "'qdrant_client', 'onnxruntime') if m in sys.modules), file=sys.stderr)); " \
        "sys.argv = ['qdrant-compat'] + sys.argv[1:]; from qdrant_compat.cli.main import main; main()"


def build_world(tmp: Path) -> dict[str, str]:
    from qdrant_compat import CompatClient, InputSpec, Registry
    from qdrant_compat.data import load_npz, write_image_folder
    from qdrant_compat.indexing import index_folder
    from qdrant_compat.models import ModelConfig
    from qdrant_compat.training import TrainConfig, TrainingSummary, export_and_register, save_checkpoint, train_model

    src = load_npz(ROOT / "examples" / "data" / "omniglot_small.npz", "train")
    src = src.subset(np.flatnonzero(src.labels < 20))
    spec = InputSpec(size=28, channels=1, mean=(0.92,), std=(0.27,))
    res = train_model(src, ModelConfig(backbone="smallcnn", in_channels=1, dim=64), TrainConfig(epochs=1), spec)
    ckpt = save_checkpoint(tmp / "ckpt", res.model, TrainingSummary(input=spec, classes=list(src.classes)))
    registry = Registry(tmp / "reg")
    export_and_register(ckpt, registry, "s6", "1")
    paths = write_image_folder(src, tmp / "gallery", list(range(0, len(src), max(1, len(src) // 300))))
    client = CompatClient(path=str(tmp / "store"), registry=registry)
    index_folder(client, "g", "s6@1", tmp / "gallery")
    client.close()
    return {"path": str(tmp / "store"), "registry": str(tmp / "reg"), "image": str(paths[0])}


def time_command(args: list[str], code_root: Path, runs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    times, heavy = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, cwd=code_root)
        times.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise RuntimeError(f"{args} failed: {res.stderr[-2000:]}")
        heavy = next((ln for ln in res.stderr.splitlines() if ln.startswith("HEAVY")), "")
    return {"median_s": statistics.median(times), "runs_s": times, "imported": heavy.removeprefix("HEAVY ").strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--code-root", action="append", default=None,
                    help="checkout(s) to time (repeatable); default: this one. Label with --label in the same order.")
    ap.add_argument("--label", action="append", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    roots = [Path(r).resolve() for r in (args.code_root or [str(ROOT)])]
    labels = args.label or [("this checkout" if r == ROOT else str(r)) for r in roots]
    with tempfile.TemporaryDirectory() as tmp:
        w = build_world(Path(tmp))
        base = ["--path", w["path"], "--registry", w["registry"], "--no-progress"]
        figures: dict[str, Any] = {}
        for label, root in zip(labels, roots, strict=True):
            figures[label] = {
                "help": time_command(["--help"], root, args.runs),
                "search": time_command([*base, "search", w["image"], "--collection", "g", "--model", "s6@1", "-k", "5"],
                                       root, args.runs),
            }
            log.info("%s: %s", label, {k: round(v["median_s"], 3) for k, v in figures[label].items()})
    now = figures[labels[-1]]
    targets = {"S6": {"met": bool(now["help"]["median_s"] <= 0.5 and now["search"]["median_s"] <= 1.5
                                  and "torch" not in now["search"]["imported"] and "torch" not in now["help"]["imported"]),
                      "value": {"help_s": now["help"]["median_s"], "search_s": now["search"]["median_s"]}}}
    path = write_results("s6_cold_start.json", {"runs": args.runs, "figures": figures, "targets": targets})
    print("\n| code | --help median s | search median s | modules loaded by search |\n|---|---|---|---|")
    for label, f in figures.items():
        print(f"| {label} | {f['help']['median_s']:.2f} | {f['search']['median_s']:.2f} | {f['search']['imported']} |")
    print_targets(targets)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
