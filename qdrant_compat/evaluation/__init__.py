"""Retrieval metrics and the cross-model compatibility test."""

from qdrant_compat.evaluation.crossmodel import CompatibilityReport, cross_model_matrix, evaluate_pair
from qdrant_compat.evaluation.metrics import l2_normalize, retrieval_metrics, summarize
from qdrant_compat.evaluation.models import evaluate_registered, record_bct_evidence

__all__ = [
    "CompatibilityReport",
    "cross_model_matrix",
    "evaluate_pair",
    "evaluate_registered",
    "l2_normalize",
    "record_bct_evidence",
    "retrieval_metrics",
    "summarize",
]
