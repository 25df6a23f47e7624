"""Serving side: ONNX Runtime embedding and converter heads. Imports no torch."""

from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.runtime.onnx import INPUT_NAME, OUTPUT_NAME, ConverterRuntime, ort_session

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ConverterRuntime", "Embedder", "ort_session"]
