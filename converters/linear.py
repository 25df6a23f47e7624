from __future__ import annotations

from typing import Any

import numpy as np
import torch

from converters.base import Converter, NormalizedAffine, register_converter


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression with intercept: ``W = (XcᵀXc + αI)⁻¹ XcᵀYc``, ``b = ȳ − x̄W``."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return w, my - mx @ w


@register_converter("linear")
class LinearConverter(Converter):
    """Affine map fitted by ridge regression (closed form), on unit-normalised embeddings."""

    def __init__(self, dim_in: int, dim_out: int, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)
        super().__init__(dim_in, dim_out)

    def build(self) -> NormalizedAffine:
        return NormalizedAffine(self.dim_in, self.dim_out)

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> dict[str, Any]:
        w, b = ridge(x, y, self.alpha)
        self.module.weight.data = torch.from_numpy(w.astype(np.float32))
        self.module.bias.data = torch.from_numpy(b.astype(np.float32))
        return {"alpha": self.alpha}
