"""Compatibility measured while training: a held-out slice, the criterion each epoch, the weight schedule.

A backward-compatible model is only worth registering if its queries search the old gallery at least as well
as the old model did (new/old top-1 > old/old top-1; Shen et al., CVPR 2020). Measuring that after training,
with a separate ``evaluate``, lets a failing model reach the registry unnoticed. The gate keeps a slice of the
training images apart (per class, never used for a gradient step), and after each epoch embeds it with the new
model and compares, leave-one-out:

* ``old/old``: the old model's embeddings of the slice (fixed: what the stored gallery holds);
* ``new/old``: the new model's queries against them;
* ``new/new``: the new model alone.

The kept checkpoint is the epoch that meets the criterion (``new/old - old/old > margin``) with the best
new/new. Optionally (``boost`` > 1), while the criterion fails in the second half of training, the weights of
the terms that read the old model are multiplied by ``boost`` after each measurement (at most ``cap`` times their
start). It is off by default because it did not help where it was measured: on the walkthrough world (Omniglot
100 -> 150 classes, 8 epochs, the gate on the test drawers) boost 1.5 ended at new/old 54.4 (+1.2) and new/new
58.3, boost 1 (off) at 56.1 (+2.9) and 57.9. The run ends with one sentence, and the figures go in the card as
training-time evidence (``training.gate``), distinct from ``evaluate --record``; ``upgrade plan`` never adopts a
model whose gate failed.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from qdrant_compat.errors import InvalidArgumentError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Attributes:
        holdout: fraction of each class kept apart (at least ``min_per_class`` images of each class that has
            ``min_per_class + 2`` or more; smaller classes stay whole in training).
        margin: the criterion: new/old top-1 - old/old top-1 > margin (points).
        boost, cap: after a failing measurement the compatibility terms' weights are multiplied by ``boost``,
            never beyond ``cap`` times their starting weight; only from ``boost_after`` x epochs on (a new model
            starts far from the old space and fails its first measurements by construction).
        every: epochs between measurements (the last epoch is always measured).
    """

    holdout: float = 0.1
    min_per_class: int = 2
    margin: float = 0.0
    boost: float = 1.0  # off by default: measured to hurt on the walkthrough world (see the module docstring)
    cap: float = 4.0
    every: int = 1
    seed: int = 0
    boost_after: float = 0.5  # no boost in the first half of training: a model trained from scratch fails early

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 0.5:
            raise InvalidArgumentError(f"gate holdout must be in (0, 0.5), got {self.holdout}")
        if self.min_per_class < 2:
            raise InvalidArgumentError(f"gate min_per_class must be >= 2 (leave-one-out needs a pair), got {self.min_per_class}")
        if self.boost < 1 or self.cap < 1:
            raise InvalidArgumentError(f"gate boost and cap must be >= 1, got {self.boost}, {self.cap}")
        if self.every < 1:
            raise InvalidArgumentError(f"gate every must be >= 1, got {self.every}")


def split_holdout(labels: np.ndarray, cfg: GateConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, held-out indices)``, per class, seeded."""
    from qdrant_compat.data.splits import per_class_holdout

    held = per_class_holdout(labels, cfg.holdout, np.random.default_rng(cfg.seed + 7919), cfg.min_per_class)
    if len(np.unique(labels[held])) < 2:
        raise InvalidArgumentError(
            f"the compatibility gate needs at least 2 classes with {cfg.min_per_class + 2}+ images each to hold out; "
            "train with more images per class, or turn the gate off (--no-gate)")
    return np.setdiff1d(np.arange(len(labels)), held), held


@dataclass
class GateResult:
    criterion_met: bool
    new_old: float  # of the kept epoch (or the best new/old when none met the criterion)
    old_old: float
    new_new: float
    margin: float
    epoch: int
    epochs: int
    holdout_images: int
    history: list[dict[str, float]] = field(default_factory=list)
    source: str = "held-out training images"

    def sentence(self) -> str:
        if self.criterion_met:
            return (f"compatible: new/old {self.new_old:.1f} > old/old {self.old_old:.1f} ({self.new_old - self.old_old:+.1f}), "
                    f"new/new {self.new_new:.1f} (epoch {self.epoch} kept; top-1 % on {self.holdout_images} {self.source})")
        return (f"not compatible after {self.epochs} epochs (best new/old {self.new_old:.1f} vs old/old {self.old_old:.1f}, "
                f"top-1 % on {self.holdout_images} {self.source}); bridge with `converter fit` or backfill")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measured_on": f"{self.source} (training-time gate)", "metric": "top1"}


class CompatibilityGate:
    """Measures the held-out slice after each epoch, adapts the loss weights, keeps the best passing state."""

    def __init__(self, cfg: GateConfig, images: Any, labels: np.ndarray, old_embeddings: np.ndarray, spec: Any, *,
                 source: str = "held-out training images") -> None:
        from qdrant_compat.evaluation import evaluate_pair

        self.cfg, self.images, self.labels, self.spec, self.source = cfg, images, np.asarray(labels), spec, source
        self.old = old_embeddings
        self.old_old = float(evaluate_pair(self.old, self.old, self.labels)["top1"])
        self.history: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (new/new, epoch, state)
        self.best_fail: tuple[float, int] | None = None  # (new/old, epoch) when nothing passes yet
        self.start_weights: dict[str, float] | None = None

    @torch.no_grad()
    def _embed(self, model: Any, device: str) -> np.ndarray:
        from qdrant_compat.data.transforms import preprocess

        was = model.training
        model.eval()
        out = []
        for s in range(0, len(self.images), 256):
            x = torch.from_numpy(preprocess([self.images.get(i) for i in range(s, min(len(self.images), s + 256))], self.spec))
            out.append(model(x.to(device)).float().cpu())
        model.train(was)
        return torch.cat(out).numpy()

    def measure(self, model: Any, device: str, epoch: int, loss_fn: Any, epochs: int | None = None) -> dict[str, float]:
        from qdrant_compat.evaluation import evaluate_pair

        new = self._embed(model, device)
        d_old = self.old.shape[1]
        q = new[:, :d_old]
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        new_old = float(evaluate_pair(q, self.old, self.labels)["top1"])
        new_new = float(evaluate_pair(new, new, self.labels)["top1"])
        met = new_old - self.old_old > self.cfg.margin
        row = {"epoch": epoch, "new_old": new_old, "old_old": self.old_old, "new_new": new_new,
               "criterion_met": float(met)}
        if met and (self.best is None or new_new > self.best[0]):
            self.best = (new_new, epoch, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
            row["kept"] = 1.0
        if not met and (self.best_fail is None or new_old > self.best_fail[0]):
            self.best_fail = (new_old, epoch)
        if not met and (epochs is None or epoch > self.cfg.boost_after * epochs):
            self._boost(loss_fn, row)
        self.history.append(row)
        log.info("gate epoch %d: new/old %.1f vs old/old %.1f, new/new %.1f -> %s", epoch, new_old, self.old_old, new_new,
                 "met" if met else "not met")
        return row

    def _boost(self, loss_fn: Any, row: dict[str, float]) -> None:
        """Raise the compatibility terms' weights after a failing measurement (documented schedule, capped)."""
        names = [k for k, t in loss_fn.terms.items() if getattr(t, "needs_old", False)]
        if self.start_weights is None:
            self.start_weights = {k: loss_fn.weights[k] for k in names}
        for k in names:
            loss_fn.weights[k] = min(loss_fn.weights[k] * self.cfg.boost, self.start_weights[k] * self.cfg.cap)
        row["compat_weight_x"] = (loss_fn.weights[names[0]] / self.start_weights[names[0]]) if names else 1.0

    def finish(self, model: Any, epochs: int) -> GateResult:
        """Load the kept state into ``model`` (when an epoch passed) and say how it went."""
        n = len(self.labels)
        if self.best is not None:
            model.load_state_dict(self.best[2])
            kept = next(r for r in self.history if r["epoch"] == self.best[1])
            return GateResult(True, kept["new_old"], self.old_old, kept["new_new"], kept["new_old"] - self.old_old,
                              self.best[1], epochs, n, self.history, self.source)
        assert self.best_fail is not None
        row = next(r for r in self.history if r["epoch"] == self.best_fail[1])
        return GateResult(False, row["new_old"], self.old_old, row["new_new"], row["new_old"] - self.old_old,
                          self.best_fail[1], epochs, n, self.history, self.source)

    def to_state(self) -> dict[str, Any]:
        return {"history": self.history, "best": None if self.best is None else [self.best[0], self.best[1], self.best[2]],
                "best_fail": None if self.best_fail is None else list(self.best_fail), "start_weights": self.start_weights}

    def load(self, st: dict[str, Any], loss_fn: Any) -> None:
        self.history = list(st["history"])
        self.best = None if st["best"] is None else (float(st["best"][0]), int(st["best"][1]), dict(st["best"][2]))
        self.best_fail = None if st["best_fail"] is None else (float(st["best_fail"][0]), int(st["best_fail"][1]))
        self.start_weights = st["start_weights"]
        if self.start_weights:  # the boosted weights in force when the state was written
            factor = 1.0
            for r in self.history:
                factor = r.get("compat_weight_x", factor)
            for k, w in self.start_weights.items():
                loss_fn.weights[k] = w * factor
