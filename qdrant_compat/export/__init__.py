"""Verified ONNX export."""

from qdrant_compat.export.onnx import (
    ExportError,
    ExportReport,
    export_embedding_model,
    export_module,
    ort_session,
    read_metadata,
)

__all__ = ["ExportError", "ExportReport", "export_embedding_model", "export_module", "ort_session", "read_metadata"]
