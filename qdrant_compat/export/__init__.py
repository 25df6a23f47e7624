"""Verified ONNX export."""

from qdrant_compat.errors import require_extra

require_extra("train", "torch", "onnx", feature="qdrant_compat.export")


from qdrant_compat.export.onnx import (  # noqa: E402
    ExportError,
    ExportReport,
    export_embedding_model,
    export_module,
    ort_session,
    read_metadata,
)

__all__ = ["ExportError", "ExportReport", "export_embedding_model", "export_module", "ort_session", "read_metadata"]
