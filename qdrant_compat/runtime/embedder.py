"""Run a registered model with ONNX Runtime: images in, float32 ``(n, dim)`` out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.data.images import load_image
from qdrant_compat.data.transforms import preprocess
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.registry import RegisteredModel, Registry
from qdrant_compat.runtime.onnx import ort_session

log = logging.getLogger(__name__)


class Embedder:
    """Feature extractor for one registered model version.

    Example:
        >>> emb = Embedder.from_registry(Registry("artifacts"), "omniglot@1")
        >>> vecs = emb.embed(["a.png", "b.png"])
    """

    def __init__(self, model: RegisteredModel, *, batch_size: int = 64, providers: list[str] | None = None) -> None:
        self.card: ModelCard = model.card
        self.batch_size = int(batch_size)
        self._sess = ort_session(model.onnx_path, providers)
        # exported models name them 'input'/'embedding'; an imported graph has its own names: use the first of each
        self._in, self._out = self._sess.get_inputs()[0].name, self._sess.get_outputs()[0].name

    @classmethod
    def from_registry(cls, registry: Registry, ref: str, **kw: Any) -> Embedder:
        return cls(registry.get_model(ref), **kw)

    def embed_tensor(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 ``(n, C, S, S)`` -> ``(n, dim)``."""
        spec = self.card.input
        expected = (spec.channels, spec.size, spec.size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise InvalidArgumentError(
                f"{self.card.ref} expects input of shape (n, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        out = np.empty((len(x), self.card.dim), dtype=np.float32)
        for s in range(0, len(x), self.batch_size):
            chunk = np.ascontiguousarray(x[s : s + self.batch_size], dtype=np.float32)
            out[s : s + len(chunk)] = self._sess.run([self._out], {self._in: chunk})[0]
        return out

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """Image paths, PIL images or uint8 arrays -> ``(n, dim)`` float32."""
        out = np.empty((len(images), self.card.dim), dtype=np.float32)
        for s in range(0, len(images), self.batch_size):
            batch = [load_image(i) if isinstance(i, (str, Path)) else i for i in images[s : s + self.batch_size]]
            out[s : s + len(batch)] = self.embed_tensor(preprocess(batch, self.card.input))
        return out

    def embed_source(self, source: Any, indices: Sequence[int] | None = None, *, cache: Any = None,
                     unreadable: str = "raise") -> np.ndarray:
        """Embed every image (or ``indices``) of an :class:`~qdrant_compat.data.ImageSource`.

        Args:
            cache: a :class:`~qdrant_compat.runtime.cache.VectorCache`: images this model (same fingerprint and
                input spec) embedded before are read from it, only the others are run.
            unreadable: ``"raise"`` (an image that cannot be read fails the call) or ``"nan"`` (its row is NaN, and
                the cache never stores it).
        """
        if unreadable not in ("raise", "nan"):
            raise InvalidArgumentError(f"unreadable must be 'raise' or 'nan', got {unreadable!r}")
        idx = [int(i) for i in (range(len(source)) if indices is None else indices)]
        if cache is not None:
            from qdrant_compat.runtime.cache import cached_rows, model_key

            return cached_rows(cache, model_key("onnx", self.card.fingerprint, self.card.input), source, idx,
                               lambda sub: self.embed_source(source, sub, unreadable=unreadable))
        out = np.empty((len(idx), self.card.dim), dtype=np.float32)
        for s in range(0, len(idx), self.batch_size):
            part = idx[s : s + self.batch_size]
            out[s : s + len(part)] = self._rows(source, part, unreadable)
        return out

    def _rows(self, source: Any, part: list[int], unreadable: str) -> np.ndarray:
        from qdrant_compat.errors import QdrantCompatError

        try:
            return self.embed_tensor(preprocess([source.get(i) for i in part], self.card.input))
        except (QdrantCompatError, OSError, ValueError):
            if unreadable == "raise":
                raise
        out = np.full((len(part), self.card.dim), np.nan, dtype=np.float32)  # one image spoilt the batch: one by one
        for k, i in enumerate(part):
            try:
                out[k] = self.embed_tensor(preprocess([source.get(i)], self.card.input))[0]
            except (QdrantCompatError, OSError, ValueError) as exc:
                log.info("image %d cannot be read (%s)", i, exc)
        return out
