from __future__ import annotations

from typing import Any

import numpy as np
import torch

from converters.base import Converter, NormalizedAffine, register_converter
from converters.linear import ridge
from qdrant_compat.errors import InvalidArgumentError


@register_converter("lowrank")
class LowRankConverter(Converter):
    """Reduced-rank ridge regression (closed form): the ridge map projected on the top-``rank``
    directions of its fitted values, stored as two factors (``dim_in×rank`` and ``rank×dim_out``)."""

    def __init__(self, dim_in: int, dim_out: int, rank: int = 32, alpha: float = 1.0) -> None:
        if rank < 1 or rank > min(dim_in, dim_out):
            raise InvalidArgumentError(f"rank must be in 1..{min(dim_in, dim_out)}, got {rank}")
        self.rank, self.alpha = int(rank), float(alpha)
        super().__init__(dim_in, dim_out)

    def build(self) -> NormalizedAffine:
        return NormalizedAffine(self.dim_in, self.dim_out, rank=self.rank)

    def options(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha}

    def _fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> dict[str, Any]:
        w, b = ridge(x, y, self.alpha)
        fitted = (x - x.mean(0)) @ w
        # top right-singular vectors of the fitted values, via the small (dim_out x dim_out) Gram matrix
        evals, evecs = np.linalg.eigh(fitted.T @ fitted)
        v = evecs[:, np.argsort(evals)[::-1][: self.rank]]  # (dim_out, rank)
        self.module.a.data = torch.from_numpy((w @ v).astype(np.float32))
        self.module.b_.data = torch.from_numpy(v.T.astype(np.float32))
        self.module.bias.data = torch.from_numpy(b.astype(np.float32))
        return {"rank": self.rank}
