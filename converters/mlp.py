from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from converters.base import Converter, register_converter
from converters.linear import ridge
from qdrant_compat.errors import InvalidArgumentError

OBJECTIVES = ("cosine", "mse")


class ResidualMLP(nn.Module):
    """``normalize(linear(x) + mlp(x))`` on a normalised input; the linear part starts at the ridge fit."""

    def __init__(self, dim_in: int, dim_out: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        layers: list[nn.Module] = []
        d = dim_in
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()]
            d = hidden
        last = nn.Linear(d, dim_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # starts as the linear fit exactly
        self.mlp = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(x, dim=1)
        return nn.functional.normalize(self.linear(x) + self.mlp(x), dim=1)


@register_converter("mlp")
class MLPConverter(Converter):
    """Residual MLP trained with a cosine (or MSE) objective, early-stopped on held-out pairs."""

    def __init__(self, dim_in: int, dim_out: int, hidden: int = 1024, depth: int = 2, epochs: int = 60,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 512, objective: str = "cosine",
                 patience: int = 8, class_weight: float = 0.0, class_scale: float = 16.0) -> None:
        if objective not in OBJECTIVES:
            raise InvalidArgumentError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        self.hidden, self.depth, self.epochs, self.lr = int(hidden), int(depth), int(epochs), float(lr)
        self.weight_decay, self.batch_size, self.objective, self.patience = float(weight_decay), int(batch_size), objective, int(patience)
        self.class_weight, self.class_scale = float(class_weight), float(class_scale)
        super().__init__(dim_in, dim_out)

    def build(self) -> ResidualMLP:
        return ResidualMLP(self.dim_in, self.dim_out, self.hidden, self.depth)

    def options(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "depth": self.depth, "epochs": self.epochs, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "objective": self.objective,
                "patience": self.patience, "class_weight": self.class_weight, "class_scale": self.class_scale}

    def _loss(self, pred: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.objective == "cosine":
            loss = (1 - (pred * y).sum(1)).mean()
        else:
            loss = ((pred - y) ** 2).sum(1).mean()
        if labels is not None and self._w is not None and self.class_weight > 0:
            # FastFill-style: converted vectors must also be classified right by the target's frozen classifier
            logits = self.class_scale * pred @ self._w.t()
            # label -1: a class the target classifier does not know (e.g. new classes for an old model); no term
            if bool((labels >= 0).any()):
                loss = loss + self.class_weight * nn.functional.cross_entropy(logits, labels, ignore_index=-1)
        return loss

    def _fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> dict[str, Any]:
        m: ResidualMLP = self.module  # type: ignore[assignment]
        w, b = ridge(x, y, 1.0)
        m.linear.weight.data = torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.float32))
        m.linear.bias.data = torch.from_numpy(b.astype(np.float32))
        xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
        use_cls = self.class_weight > 0 and getattr(self, "_labels", None) is not None and getattr(self, "_classifier", None) is not None
        self._w = nn.functional.normalize(torch.from_numpy(np.asarray(self._classifier, np.float32)), dim=1) if use_cls else None
        lt = torch.from_numpy(np.asarray(self._labels, np.int64)) if use_cls else None
        xvt, yvt = torch.from_numpy(xv.astype(np.float32)), torch.from_numpy(yv.astype(np.float32))
        opt = torch.optim.AdamW(m.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, bad, epochs_run = float("inf"), copy.deepcopy(m.state_dict()), 0, 0
        for _ in range(self.epochs):
            m.train()
            perm = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(xt), self.batch_size):
                idx = perm[s : s + self.batch_size]
                loss = self._loss(m(xt[idx]), yt[idx], None if lt is None else lt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            epochs_run += 1
            m.eval()
            with torch.no_grad():
                val = float(self._loss(m(xvt), yvt))
            if val < best - 1e-5:
                best, best_state, bad = val, copy.deepcopy(m.state_dict()), 0
            else:
                bad += 1
                if bad >= self.patience:
                    break
        m.load_state_dict(best_state)
        return {"epochs_run": epochs_run, "best_val_loss": best}
