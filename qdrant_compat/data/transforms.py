"""Preprocessing from an :class:`~qdrant_compat.cards.InputSpec`.

The same function feeds training and the ONNX embedder, so the tensor a model was trained on and the
tensor it sees in production cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from qdrant_compat.cards import InputSpec
from qdrant_compat.errors import InvalidArgumentError


def to_pil(img: Any, channels: int) -> Image.Image:
    """PIL image or uint8 array ``(H, W)`` / ``(H, W, C)`` -> PIL image in ``L`` or ``RGB`` mode."""
    if isinstance(img, Image.Image):
        pil = img
    elif isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise InvalidArgumentError(f"image arrays must be uint8, got {img.dtype}")
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.ndim == 2:
            pil = Image.fromarray(img, mode="L")
        elif img.ndim == 3 and img.shape[2] in (3, 4):
            pil = Image.fromarray(img[:, :, :3], mode="RGB")
        else:
            raise InvalidArgumentError(
                f"image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {img.shape}"
            )
    else:
        raise InvalidArgumentError(f"expected a PIL image or a uint8 array, got {type(img).__name__}")
    return _eight_bit(pil).convert("L" if channels == 1 else "RGB")


def _eight_bit(pil: Image.Image) -> Image.Image:
    """Single-band images deeper than 8 bits, scaled to 0..255 instead of clipped (Pillow's ``convert`` clips, so
    a float TIFF in [0, 1] would come out black and a 16-bit PNG white): floats in [0, 1] are scaled by 255, other
    floats clipped to [0, 255]; 16-bit integers are divided by 257, 32-bit ones too where they exceed 255.

    Raises:
        InvalidArgumentError: a float image holding NaN or infinity.
    """
    if pil.mode not in ("F", "I") and not pil.mode.startswith("I;16"):
        return pil
    arr = np.asarray(pil, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InvalidArgumentError("the image holds NaN or infinite pixel values; nothing can be embedded from it")
    if pil.mode == "F":
        arr = arr * 255.0 if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0 else arr
    elif pil.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _resize(pil: Image.Image, spec: InputSpec) -> Image.Image:
    s = int(spec.size)
    if pil.size == (s, s):
        return pil
    if spec.resize == "resize":
        return pil.resize((s, s), Image.Resampling.BILINEAR)
    w, h = pil.size
    scale = s / min(w, h)
    nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
    pil = pil.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - s) // 2, (nh - s) // 2
    return pil.crop((left, top, left + s, top + s))


def preprocess(images: Sequence[Any], spec: InputSpec) -> np.ndarray:
    """Images -> float32 ``(n, channels, size, size)``, scaled to [0, 1] then ``(x - mean) / std``."""
    s, c = int(spec.size), spec.channels
    out = np.empty((len(images), c, s, s), dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(c, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(c, 1, 1)
    for i, img in enumerate(images):
        arr = np.asarray(_resize(to_pil(img, c), spec), dtype=np.float32) / 255.0
        arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
        out[i] = (arr - mean) / std
    return out
