"""Torch side: backbones by name, embedding heads, cosine classifiers."""

from qdrant_compat.models.backbones import create_backbone, list_backbones, register_backbone
from qdrant_compat.models.embedding import CosineClassifier, EmbeddingHead, EmbeddingModel, ModelConfig

__all__ = [
    "CosineClassifier",
    "EmbeddingHead",
    "EmbeddingModel",
    "ModelConfig",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
