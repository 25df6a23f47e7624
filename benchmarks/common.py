"""Shared benchmark plumbing: data location, backbone feature cache, results files, machine info."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.cards import InputSpec

log = logging.getLogger("benchmarks")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA_ENV = "QDRANT_COMPAT_DATA"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
# EfficientNet-Lite was trained on inputs scaled to [-1, 1]
LITE_SPEC = InputSpec(size=64, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
OLD_BACKBONE, NEW_BACKBONE = "efficientnet-lite0", "efficientnet-lite2"
SEEN = 50  # old model: classes 0..49


def data_dir(arg: str | None = None) -> Path:
    d = Path(arg or os.environ.get(DATA_ENV) or DEFAULT_DATA)
    if not (d / "tinyimagenet100_dev.npz").exists():
        sys.exit(f"error: {d}/tinyimagenet100_dev.npz not found; pass --data DIR or set {DATA_ENV}")
    return d


def cache_dir() -> Path:
    d = Path(os.environ.get("QDRANT_COMPAT_CACHE", ROOT / "benchmarks" / "cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} GPU, {os.cpu_count()} CPU cores"
    except ImportError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.processor() or 'unknown'})"


def p1_parser(doc: str | None, *, batch_help: str | None = None, eval_on: bool = True) -> argparse.ArgumentParser:
    """The options every P1 benchmark takes: data folder, seeds, epochs, batch size (and ``--eval-on``)."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=512, help=batch_help)
    if eval_on:
        ap.add_argument("--eval-on", choices=["val", "holdout"], default="val")
    return ap


def tiny_imagenet(data: Path):  # type: ignore[no-untyped-def]
    from qdrant_compat.data import load_npz

    f = data / "tinyimagenet100_dev.npz"
    return load_npz(f, "train"), load_npz(f, "test")


def backbone_features(backbone: str, split: str, source: Any, *, batch_size: int = 256) -> np.ndarray:
    """Frozen pretrained backbone features, cached on disk (computed with the library's own path)."""
    import torch

    from qdrant_compat.models import EmbeddingModel, ModelConfig
    from qdrant_compat.training import compute_features

    f = cache_dir() / f"{backbone}_{split}_{LITE_SPEC.size}.npy"
    if f.exists():
        arr = np.load(f)
        if len(arr) == len(source):
            return arr
    torch.set_num_threads(os.cpu_count() or 1)
    m = EmbeddingModel(ModelConfig(backbone=backbone, freeze_backbone=True, num_classes=1))
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            log.info("%s %s features: %d/%d", backbone, split, done, total)

    feats = compute_features(m, source, LITE_SPEC, batch_size=batch_size, progress=progress).numpy()
    log.info("%s %s features: %d images in %.0fs", backbone, split, len(feats), time.perf_counter() - t0)
    np.save(f, feats.astype(np.float32))
    return feats


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"date": dt.date.today().isoformat(), "machine": machine(), "command": " ".join(sys.argv), **payload}
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def collect_cells(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per-seed ``{"cells": {cell: {metric: value}}}`` -> ``{cell: {metric: [value per seed]}}``."""
    cells: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for cell, metrics in r["cells"].items():
            for k, v in metrics.items():
                cells.setdefault(cell, {}).setdefault(k, []).append(v)
    return cells


def print_targets(targets: dict[str, Any]) -> None:
    print("\n| target | value | met |\n|---|---|---|")
    for k, v in targets.items():
        print(f"| {k} | {v['value']} | {'yes' if v['met'] else 'NO'} |")


def mean_std(vals: list[float]) -> str:
    a = np.asarray(vals, dtype=float)
    return f"{a.mean():.1f} ± {a.std():.1f}" if len(a) > 1 else f"{a.mean():.1f}"


NEW_SEED_OFFSET = 1000  # new models start from their own initialisation, never the old model's


def negative_control(cells: dict[str, dict[str, list[float]]], n_classes: int, cell: str = "indep/old") -> dict[str, Any]:
    """The benchmark's negative control: an independently trained new model must *not* search the old gallery.

    Valid when ``indep/old`` top-1 <= 2 x chance + 1 point in every seed (chance = 100 / classes, in %);
    otherwise the run is flagged invalid (e.g. new models that started from the old model's weights).
    """
    limit = 2 * 100.0 / n_classes + 1.0
    vals = [float(v) for v in cells[cell]["top1"]]
    return {"cell": cell, "top1": vals, "limit": limit, "chance": 100.0 / n_classes, "valid": all(v <= limit for v in vals)}
