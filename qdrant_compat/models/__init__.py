"""Torch side: backbones by name, embedding heads, cosine classifiers."""

from qdrant_compat.errors import require_extra

require_extra("train", "torch", "torchvision", feature="qdrant_compat.models")


from qdrant_compat.models.backbones import create_backbone, list_backbones, register_backbone  # noqa: E402
from qdrant_compat.models.embedding import CosineClassifier, EmbeddingHead, EmbeddingModel, ModelConfig  # noqa: E402

__all__ = [
    "CosineClassifier",
    "EmbeddingHead",
    "EmbeddingModel",
    "ModelConfig",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
