"""Resumable training: one atomic state file beside the checkpoint, written every N steps and each epoch.

``DIR/resume.pt`` holds everything a run needs to continue exactly where it stopped: model, optimizer,
scheduler and grad-scaler states, the position (epoch, step within it, global step), the history so far, the
RNG states, and the configuration it was started with. It is written to a temporary file, flushed and
renamed, so a run killed at any instant (SIGKILL included) leaves either the previous state or the new one.
It is read with ``torch.load(weights_only=True)``: tensors and plain values only, nothing is unpickled.
The file is removed once the final checkpoint is saved.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

log = logging.getLogger(__name__)
STATE_FILE = "resume.pt"
FORMAT_VERSION = 1
# settings that may change between a run and its resume without changing what is computed
RUNTIME_KEYS = ("workers", "log_every", "checkpoint_every", "compile", "prefetch", "device")


def rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), *map(int, np_state[2:4]),
                  float(np_state[4])],
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_path(directory: str | Path) -> Path:
    return Path(directory) / STATE_FILE


def save_state(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``directory/resume.pt``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    final = d / STATE_FILE
    tmp = d / f".{STATE_FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def load_state(directory: str | Path) -> dict[str, Any]:
    """The state a run left in ``directory``.

    Raises:
        InvalidArgumentError: no resume state there (never started, or already finished).
        CorruptArtifactError: the file cannot be read as a resume state.
    """
    p = state_path(directory)
    if not p.is_file():
        done = (Path(directory) / "training.json").is_file()
        raise InvalidArgumentError(
            f"{directory} holds no resume state ({STATE_FILE}): "
            + ("training there already finished; nothing to resume" if done else "no run was started there"))
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises its own unpickling/format errors
        raise CorruptArtifactError(f"{p} is not a readable resume state ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CorruptArtifactError(f"{p}: expected resume state format {FORMAT_VERSION}")
    return state


def check_same_run(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume with settings that change what is computed (the runtime ones may change).

    Raises:
        InvalidArgumentError: names every differing setting with both values.
    """
    diff = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
            if k not in RUNTIME_KEYS and saved.get(k) != now.get(k)]
    if diff:
        raise InvalidArgumentError("cannot resume: the run was started with other settings (" + "; ".join(diff[:6])
                                   + "); resume with the same options, or start a new run in another --out")


def remove_state(directory: str | Path) -> None:
    p = state_path(directory)
    if p.exists():
        p.unlink()
