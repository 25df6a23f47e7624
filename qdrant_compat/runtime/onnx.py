"""ONNX Runtime sessions: the one place serving code runs a model or a converter head (no torch)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

log = logging.getLogger(__name__)
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


def ort_session(path: str | Path, providers: list[str] | None = None) -> Any:
    """An ONNX Runtime session; CUDA when available unless ``providers`` says otherwise.

    Raises:
        CorruptArtifactError: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if providers is None:
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise CorruptArtifactError(f"{path} cannot be loaded by ONNX Runtime ({exc})") from None


class ConverterRuntime:
    """Applies registered converter heads with ONNX Runtime, one cached session per converter id.

    Every caller that transforms vectors (routed queries, writes, ``upgrade run --strategy convert``, the
    plan's estimate, evaluation) goes through :meth:`apply`, which also checks the output is finite.
    """

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._sessions: dict[str, Any] = {}

    def session(self, conv_id: str) -> Any:
        sess = self._sessions.get(conv_id)
        if sess is None:
            sess = ort_session(self.registry.get_converter(conv_id).onnx_path, ["CPUExecutionProvider"])
            self._sessions[conv_id] = sess
        return sess

    def apply(self, conv_id: str, vectors: np.ndarray) -> np.ndarray:
        """``(n, dim_in)`` -> ``(n, dim_out)`` float32.

        Raises:
            InvalidArgumentError: the head produced NaN or infinity (nothing should be written or searched).
        """
        sess = self.session(conv_id)
        out = np.asarray(sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(vectors, dtype=np.float32)})[0])
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise InvalidArgumentError(
                f"converter {conv_id} produced non-finite vectors for {int(bad.sum())} of {len(out)} input(s)"
            )
        return out
