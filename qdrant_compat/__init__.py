"""qdrant-compat: upgrade the embedding model behind a Qdrant collection without re-indexing.

The public API, flat::

    from qdrant_compat import CompatClient, Registry, ModelCard, Embedder, train_model
"""

from __future__ import annotations

import logging

from qdrant_compat.cards import ConverterCard, InputSpec, Lineage, ModelCard, parse_ref
from qdrant_compat.client import CompatClient, connect
from qdrant_compat.embedder import Embedder
from qdrant_compat.errors import (
    CollectionNotFoundError,
    CorruptArtifactError,
    FingerprintMismatchError,
    IncompatibleModelError,
    InvalidArgumentError,
    JobLockedError,
    ModelNotFoundError,
    QdrantCompatError,
    UnmanagedCollectionError,
    UpgradeError,
)
from qdrant_compat.metadata import CompatMeta, Edge, VectorEntry
from qdrant_compat.registry import Registry
from qdrant_compat.routing import Route, resolve_route

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # torch-heavy parts load on first use so `import qdrant_compat` stays light for query-only users
    lazy = {
        "train_model": "qdrant_compat.training",
        "TrainConfig": "qdrant_compat.training",
        "BCT_LOSSES": "qdrant_compat.training",
        "prepare_old_targets": "qdrant_compat.training",
        "export_and_register": "qdrant_compat.training",
        "save_checkpoint": "qdrant_compat.training",
        "TrainingSummary": "qdrant_compat.training",
        "ModelConfig": "qdrant_compat.models",
        "EmbeddingModel": "qdrant_compat.models",
        "export_embedding_model": "qdrant_compat.export",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'qdrant_compat' has no attribute {name!r}")


__all__ = [
    "CollectionNotFoundError",
    "CompatClient",
    "CompatMeta",
    "ConverterCard",
    "CorruptArtifactError",
    "Edge",
    "Embedder",
    "FingerprintMismatchError",
    "IncompatibleModelError",
    "InputSpec",
    "InvalidArgumentError",
    "JobLockedError",
    "Lineage",
    "ModelCard",
    "ModelNotFoundError",
    "QdrantCompatError",
    "Registry",
    "Route",
    "UnmanagedCollectionError",
    "UpgradeError",
    "VectorEntry",
    "connect",
    "parse_ref",
    "resolve_route",
]
