"""Benchmark S5: SIGKILL ``upgrade run``, ``upgrade cutover`` and ``upgrade cleanup`` at random points,
resume, verify (20 trials each).

    python -m benchmarks.s5_crash [--trials 20] [--images 500] [--only run|cutover|cleanup|raw]

Real images (the Omniglot fixture), the embedded store, the CLI in a subprocess. Each trial starts from a
copy of the same collection state, kills the command after a random delay, records *where* the kill landed
(the job's phase, points filled, cleanup's journal), runs the same command again to the end, then checks:

* run: every point holds exactly one target vector equal to a fresh extraction, payloads unchanged;
* cutover: queries read the target, every point still holds both vectors, payloads unchanged;
* cleanup: the old vector is gone, exactly one backup is recorded and it restores every point with the
  old vector (a complete backup, never one of a half-dropped collection), target vectors intact.

``raw`` trials put a raw qdrant-client writer (old vector only; an upsert of an existing point replaces all its
vectors) at a random moment of the fill, the cutover's grace period, after the cutover, or between cleanup's
count and its drop. The embedded store admits one process, so the writer runs in the tool's process, hooked
into the store calls. The tool's commands are then driven as an operator would (rerun what refuses, with the
remedy its message names), and every point must end holding the new model's vector of its own image.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _cli(tmp: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "qdrant_compat.cli.main", "--path", str(store), "--registry", str(tmp / "reg"),
            "--no-progress"]


def _kill_after(cmd: list[str], delay: float, after_lines: int = 0, marker: str = "points written") -> bool:
    """Run ``cmd``; SIGKILL it ``delay`` seconds after it printed ``after_lines`` lines containing ``marker``
    (0: after start). Returns whether it was still running when killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if after_lines:
        assert proc.stderr is not None
        seen = 0
        for line in proc.stderr:
            seen += marker in line
            if seen >= after_lines:
                break
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def _where(tmp: Path, store: Path, target: str = "omni@2") -> dict[str, Any]:
    """The state a kill left: phase, points holding the target, cleanup's journal."""
    c = CompatClient(path=str(store), registry=tmp / "reg")
    meta = c.get_meta("g")
    job = meta.job
    out = {"phase": str(job.phase) if job else None, "read": meta.read,
           "filled": c.count_with_vector("g", target) if target in c.store.vector_params("g") else 0,
           "points": c.store.count("g"), "cleanup_recorded": bool(job and job.cleanup),
           "old_vector_present": "omni@1" in c.store.vector_params("g"),
           "old_vector_points": c.count_with_vector("g", "omni@1") if "omni@1" in c.store.vector_params("g") else 0}
    c.close()
    return out


def _fresh(tmp: Path, name: str) -> Path:
    store = tmp / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(tmp / name, store)
    return store


def trial_run(tmp: Path, rng: np.random.Generator, batch: int) -> dict[str, Any]:
    store = _fresh(tmp, "store0")
    c = CompatClient(path=str(store), registry=tmp / "reg")
    before = payload_snapshot(c, "g")
    c.close()
    args = ["upgrade", "run", "g", "--to", "omni@2", "--batch-size", str(batch), "--strategy", "backfill", "--lock-ttl", "600"]
    n_batches = -(-len(before) // batch)
    after = int(rng.integers(0, n_batches))  # 0: during start-up, before any batch was written
    delay = float(rng.uniform(0.0, 0.05)) if after else float(rng.uniform(0.2, 1.2))
    killed = _kill_after(_cli(tmp, store) + ["-v"] + args, delay, after_lines=after)
    where = _where(tmp, store)
    landed = "before the job started" if where["phase"] is None else f"{where['phase']}, {where['filled']}/{where['points']} filled"
    done = subprocess.run(_cli(tmp, store) + args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"ok": False, "killed": killed, "delay": delay, "landed": landed, "error": done.stderr[-500:]}
    c = CompatClient(path=str(store), registry=tmp / "reg")
    emb = Embedder(c.registry.get_model("omni@2"))
    res = check_fill(c, "g", "omni@2", payloads=before,
                     reference=lambda recs: emb.embed([r.payload["image_path"] for r in recs]))
    c.close()
    return {**res, "killed": killed, "delay": delay, "after_batches": after, "landed": landed}


def trial_cutover(tmp: Path, rng: np.random.Generator) -> dict[str, Any]:
    store = _fresh(tmp, "store_filled")
    c = CompatClient(path=str(store), registry=tmp / "reg")
    before = payload_snapshot(c, "g")
    c.close()
    delay = float(rng.uniform(0.2, 2.5))
    killed = _kill_after(_cli(tmp, store) + ["upgrade", "cutover", "g", "--grace", "1.0"], delay)
    where = _where(tmp, store)
    done = subprocess.run(_cli(tmp, store) + ["upgrade", "cutover", "g", "--grace", "0"], capture_output=True, text=True,
                          timeout=600)
    after = _where(tmp, store)
    c = CompatClient(path=str(store), registry=tmp / "reg")
    same_payloads = payload_snapshot(c, "g") == before
    c.close()
    ok = (done.returncode == 0 and after["phase"] == "cut_over" and after["read"] == "omni@2"
          and after["filled"] == after["points"] == where["points"] and after["old_vector_points"] == after["points"]
          and same_payloads)
    return {"ok": ok, "killed": killed, "delay": delay, "landed": f"phase {where['phase']} (read '{where['read']}')",
            "after": after, "error": done.stderr[-500:] if done.returncode else None}


def trial_cleanup(tmp: Path, rng: np.random.Generator) -> dict[str, Any]:
    store = _fresh(tmp, "store_cut")
    bk = tmp / "bk"
    shutil.rmtree(bk, ignore_errors=True)
    delay = float(rng.uniform(0.2, 1.6))
    args = ["upgrade", "cleanup", "g", "--yes", "--backup-dir", str(bk)]
    killed = _kill_after(_cli(tmp, store) + args, delay)
    where = _where(tmp, store)
    landed = ("cleaned" if where["phase"] == "cleaned" else
              "backup recorded, drop not finished" if where["cleanup_recorded"] else "before the backup was recorded")
    if where["old_vector_present"] and where["old_vector_points"] < where["points"]:
        landed += f" (old vector half-dropped: {where['old_vector_points']}/{where['points']})"
    done = subprocess.run(_cli(tmp, store) + ["--json"] + args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"ok": False, "killed": killed, "delay": delay, "landed": landed, "error": done.stderr[-500:]}
    out = json.loads(done.stdout)
    after = _where(tmp, store)
    complete = sorted(p.name for p in bk.iterdir() if p.suffix == ".jsonl")
    partial = sorted(p.name for p in bk.iterdir() if p.name.endswith(".partial"))
    c = CompatClient(path=str(store), registry=tmp / "reg")
    restored = c.store.restore(out["backup"], "restored")
    old_in_backup = c.count_with_vector("restored", "omni@1")
    c.close()
    ok = (after["phase"] == "cleaned" and not after["old_vector_present"] and after["filled"] == after["points"]
          and restored == after["points"] and old_in_backup == after["points"] and len(complete) == 1)
    return {"ok": ok, "killed": killed, "delay": delay, "landed": landed, "backups": complete,
            "partial_files_left": partial, "restored_points": restored, "old_vectors_in_backup": old_in_backup}


RAW_STAGES = ("fill", "cutover", "after_cutover", "cleanup")


def trial_raw(tmp: Path, rng: np.random.Generator, batch: int) -> dict[str, Any]:
    """One raw writer at a random moment of one step; then the commands to the end; then every point checked."""
    from qdrant_client import models as qm

    from qdrant_compat.errors import UpgradeError
    from qdrant_compat.store import Store
    from qdrant_compat.upgrade import cleanup, cutover, inplace, run_upgrade

    store = _fresh(tmp, "store0")
    c = CompatClient(path=str(store), registry=tmp / "reg", meta_ttl=0)
    images = sorted(str(p.resolve()) for p in (tmp / "gallery").rglob("*.png"))
    ids = [r.id for r in c.scroll_all("g")]
    stage = RAW_STAGES[int(rng.integers(len(RAW_STAGES)))]
    n_writes = int(rng.integers(1, 4))
    emb_old = Embedder(c.registry.get_model("omni@1"))
    written: dict[Any, str] = {}

    def raw_writes() -> None:
        for _ in range(n_writes):
            pid = ids[int(rng.integers(len(ids)))] if rng.random() < 0.5 else 10_000_000 + len(written)
            img = images[int(rng.integers(len(images)))]
            c.qdrant.upsert("g", points=[qm.PointStruct(id=pid, vector={"omni@1": emb_old.embed([img])[0].tolist()},
                                                        payload={"image_path": img})], wait=True)
            written[pid] = img

    hooks: list[tuple[Any, str, Any]] = []

    def hook(owner: Any, name: str, after_calls: int) -> None:
        real, calls = getattr(owner, name), [0]

        def wrapped(*a: Any, **kw: Any) -> Any:
            out = real(*a, **kw)
            calls[0] += 1
            if calls[0] == after_calls:
                raw_writes()
            return out

        hooks.append((owner, name, real))
        setattr(owner, name, wrapped)

    n_batches = -(-len(ids) // batch)
    if stage == "fill":
        hook(Store, "write_vectors", int(rng.integers(1, n_batches + 1)))
    elif stage == "cutover":
        hook(inplace.time, "sleep", 1)  # the cutover's grace period
    elif stage == "cleanup":
        hook(Store, "backup", 1)
    steps: list[str] = []
    try:
        for _ in range(4):  # the operator: run until filled, cut over, clean up; rerun what refuses
            rep = run_upgrade(c, "g", "omni@2", strategy="backfill", batch_size=batch)
            steps.append(f"run {rep.processed}")
            try:
                cutover(c, "g", grace=0.2)
                steps.append("cutover")
                break
            except UpgradeError as exc:
                steps.append(f"cutover refused ({str(exc)[:60]})")
        if stage == "after_cutover":
            raw_writes()
        for _ in range(3):
            try:
                out = cleanup(c, "g", yes=True, backup_dir=tmp / "bk")
                steps.append(f"cleanup ({out.left_without_vector} left without a vector)")
                break
            except UpgradeError as exc:
                steps.append(f"cleanup refused ({str(exc)[:60]})")
                steps.append(f"run {run_upgrade(c, 'g').processed}")
        steps.append(f"run {run_upgrade(c, 'g').processed}")  # fills what the cleanup reported, if anything
    finally:
        for owner, name, real in hooks:
            setattr(owner, name, real)
    emb_new = Embedder(c.registry.get_model("omni@2"))
    recs = list(c.scroll_all("g", with_vectors=["omni@2"]))
    wrong = [r.id for r in recs if "omni@2" not in (r.vector or {})]
    raw_recs = [r for r in recs if r.id in written and r.id not in wrong]
    want = emb_new.embed([written[r.id] for r in raw_recs]) if raw_recs else np.empty((0, 1))
    for r, w in zip(raw_recs, want, strict=True):
        got = np.asarray(r.vector["omni@2"])
        if r.payload["image_path"] != written[r.id] or not np.allclose(got / np.linalg.norm(got), w / np.linalg.norm(w),
                                                                         atol=1e-5):
            wrong.append(r.id)
    phase = str(c.get_meta("g").job.phase)
    n_new = sum(1 for pid in written if pid not in ids)
    ok = not wrong and len(recs) == len(ids) + n_new and phase == "cleaned"
    c.close()
    shutil.rmtree(tmp / "bk", ignore_errors=True)
    return {"ok": ok, "killed": False, "delay": 0.0, "landed": stage, "raw_writes": len(written), "steps": steps,
            "points_wrong": wrong[:10], "phase": phase}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--only", choices=["run", "cutover", "cleanup", "raw"], default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rng = np.random.default_rng(args.seed)
    kinds = [args.only] if args.only else ["run", "cutover", "cleanup", "raw"]
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prepare(tmp, args.images)
        # the starting states of the cutover and cleanup trials, made once through the CLI
        shutil.copytree(tmp / "store0", tmp / "store_filled")
        subprocess.run(_cli(tmp, tmp / "store_filled") + ["upgrade", "run", "g", "--to", "omni@2"], check=True)
        shutil.copytree(tmp / "store_filled", tmp / "store_cut")
        subprocess.run(_cli(tmp, tmp / "store_cut") + ["upgrade", "cutover", "g", "--grace", "0"], check=True)
        for kind in kinds:
            results = []
            for i in range(args.trials):
                r = (trial_run(tmp, rng, args.batch_size) if kind == "run" else
                     trial_cutover(tmp, rng) if kind == "cutover" else
                     trial_raw(tmp, rng, args.batch_size) if kind == "raw" else trial_cleanup(tmp, rng))
                log.info("%s trial %d: killed=%s after %.1fs, landed: %s -> ok=%s", kind, i, r["killed"], r["delay"],
                         r["landed"], r["ok"])
                results.append(r)
            landed: dict[str, int] = {}
            for r in results:
                key = r["landed"].split(",")[0] if kind == "run" else r["landed"]
                landed[key] = landed.get(key, 0) + 1
            summary[kind] = {"passed": sum(r["ok"] for r in results), "trials": args.trials, "images": args.images,
                             "date": time.strftime("%Y-%m-%d"),
                             "killed_mid_command": sum(r["killed"] for r in results), "landed": landed, "results": results}
    previous = ROOT / "benchmarks" / "results" / "s5_crash.json"
    if args.only and previous.is_file():  # one kind rerun: keep the other kinds' last results beside it
        old = json.loads(previous.read_text()).get("commands", {})
        summary = {**{k: v for k, v in old.items() if k not in summary}, **summary}
    passed = sum(v["passed"] for v in summary.values())
    total = sum(v["trials"] for v in summary.values())
    path = write_results("s5_crash.json", {"images": args.images, "batch_size": args.batch_size, "seed": args.seed,
                                           "commands": summary,
                                           "targets": {"S5": {"met": passed == total, "value": f"{passed}/{total}"}}})
    for kind, v in summary.items():
        print(f"S5 {kind}: {v['passed']}/{v['trials']} trials ended exactly right ({v['killed_mid_command']} killed "
              f"mid-command); kills landed: {v['landed']}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
