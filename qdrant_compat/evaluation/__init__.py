"""Retrieval metrics and the cross-model compatibility test."""

from qdrant_compat.evaluation.crossmodel import CompatibilityReport, cross_model_matrix, evaluate_pair
from qdrant_compat.evaluation.metrics import l2_normalize, retrieval_metrics, summarize

__all__ = ["CompatibilityReport", "cross_model_matrix", "evaluate_pair", "l2_normalize", "retrieval_metrics", "summarize"]
