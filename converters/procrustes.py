from __future__ import annotations

from typing import Any

import numpy as np
import torch

from converters.base import Converter, NormalizedAffine, register_converter


@register_converter("procrustes")
class ProcrustesConverter(Converter):
    """Orthogonal Procrustes (closed form): the (semi-)orthogonal ``W`` maximising ``tr(WᵀXcᵀYc)``.

    For ``dim_in != dim_out`` the solution ``W = U Vᵀ`` from the thin SVD ``XcᵀYc = U S Vᵀ`` has
    orthonormal columns (or rows): a rotation plus an embedding into, or projection onto, a subspace.
    Geometry-preserving, so it cannot overfit; the bias re-centres the means.
    """

    def build(self) -> NormalizedAffine:
        return NormalizedAffine(self.dim_in, self.dim_out)

    def _fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> dict[str, Any]:
        mx, my = x.mean(0), y.mean(0)
        u, _, vt = np.linalg.svd((x - mx).T @ (y - my), full_matrices=False)
        w = u @ vt
        self.module.weight.data = torch.from_numpy(w.astype(np.float32))
        self.module.bias.data = torch.from_numpy((my - mx @ w).astype(np.float32))
        return {}
