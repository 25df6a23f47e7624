"""Benchmark S5: SIGKILL ``qdrant-compat upgrade run`` at random points, resume, verify (20 trials).

    python -m benchmarks.s5_crash [--trials 20] [--images 500] [--strategy backfill|convert+backfill]

Real images (the Omniglot fixture), the embedded store, the CLI in a subprocess. Each trial starts from a
copy of the same v1 collection, kills the run after a random delay, resumes it to the end, then checks that
every point holds exactly one target vector equal to a fresh extraction and an unchanged payload.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, write_results
from qdrant_compat import CompatClient, InputSpec, Registry
from qdrant_compat.data import load_npz, write_image_folder
from qdrant_compat.indexing import index_folder
from qdrant_compat.models import ModelConfig
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.training import TrainConfig, TrainingSummary, export_and_register, save_checkpoint, train_model
from qdrant_compat.upgrade.verify import check_fill, payload_snapshot

log = logging.getLogger("benchmarks.s5")
SPEC = InputSpec(size=28, channels=1, mean=(0.92,), std=(0.27,))


def prepare(tmp: Path, n_images: int) -> None:
    npz = ROOT / "examples" / "data" / "omniglot_small.npz"
    train, test = load_npz(npz, "train"), load_npz(npz, "test")
    reg = Registry(tmp / "reg")
    for version, seed in (("1", 0), ("2", 1)):
        res = train_model(train, ModelConfig(in_channels=1, dim=32), TrainConfig(epochs=1, batch_size=128, seed=seed), SPEC)
        ck = save_checkpoint(tmp / f"ck{version}", res.model, TrainingSummary(input=SPEC, classes=list(train.classes)))
        export_and_register(ck, reg, "omni", version)
    write_image_folder(test, tmp / "gallery", range(n_images))
    c = CompatClient(path=str(tmp / "store0"), registry=reg)
    index_folder(c, "g", "omni@1", tmp / "gallery")
    c.close()


def trial(tmp: Path, rng: np.random.Generator, strategy: str, batch: int) -> dict:
    store = tmp / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(tmp / "store0", store)
    c = CompatClient(path=str(store), registry=tmp / "reg")
    before = payload_snapshot(c, "g")
    c.close()
    base = [sys.executable, "-m", "qdrant_compat.cli.main", "--path", str(store), "--registry", str(tmp / "reg"),
            "--no-progress"]
    args = ["upgrade", "run", "g", "--to", "omni@2", "--batch-size", str(batch), "--strategy", strategy,
            "--lock-ttl", "600"]
    delay = float(rng.uniform(1.5, 6.0))
    proc = subprocess.Popen(base + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(base + args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"ok": False, "killed": killed, "delay": delay, "error": done.stderr[-500:]}
    c = CompatClient(path=str(store), registry=tmp / "reg")
    emb = Embedder(c.registry.get_model("omni@2"))
    res = check_fill(c, "g", "omni@2", payloads=before,
                     reference=lambda recs: emb.embed([r.payload["image_path"] for r in recs]))
    c.close()
    return {**res, "killed": killed, "delay": delay}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--strategy", default="backfill", choices=["backfill"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prepare(tmp, args.images)
        results = []
        for i in range(args.trials):
            r = trial(tmp, rng, args.strategy, args.batch_size)
            log.info("trial %d: killed=%s after %.1fs ok=%s %s", i, r["killed"], r["delay"], r["ok"],
                     {k: r[k] for k in ("missing_vector", "wrong_vector", "changed_payload") if k in r})
            results.append(r)
    passed = sum(r["ok"] for r in results)
    killed = sum(r["killed"] for r in results)
    path = write_results("s5_crash.json", {"trials": args.trials, "images": args.images, "batch_size": args.batch_size,
                                           "seed": args.seed, "killed_mid_run": killed, "passed": passed,
                                           "results": results,
                                           "targets": {"S5": {"met": passed == args.trials, "value": f"{passed}/{args.trials}"}}})
    print(f"S5: {passed}/{args.trials} trials ended exactly right ({killed} killed mid-run); results: {path}")


if __name__ == "__main__":
    main()
