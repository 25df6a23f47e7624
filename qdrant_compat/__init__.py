"""qdrant-compat: upgrade the embedding model behind a Qdrant collection without re-indexing.

The public API, flat::

    from qdrant_compat import CompatClient, Registry, ModelCard, Embedder, train_model

Everything loads on first use (PEP 562), so ``import qdrant_compat`` costs milliseconds and the serving
side (collections, routing, ONNX Runtime embedding, upgrades) never imports torch. The training side
(``train_model``, ``export_embedding_model``, ...) needs the ``train`` extra: ``pip install "qdrant-compat[train]"``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from qdrant_compat._registry import lazy_attributes

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

_LAZY = {
    # serving side (no torch)
    "ConverterCard": "qdrant_compat.cards",
    "InputSpec": "qdrant_compat.cards",
    "Lineage": "qdrant_compat.cards",
    "ModelCard": "qdrant_compat.cards",
    "parse_ref": "qdrant_compat.cards",
    "CompatClient": "qdrant_compat.client",
    "connect": "qdrant_compat.store",
    "Store": "qdrant_compat.store",
    "Embedder": "qdrant_compat.runtime.embedder",
    "CompatMeta": "qdrant_compat.metadata",
    "Edge": "qdrant_compat.metadata",
    "VectorEntry": "qdrant_compat.metadata",
    "JobState": "qdrant_compat.metadata",
    "Registry": "qdrant_compat.registry",
    "Route": "qdrant_compat.routing",
    "resolve_route": "qdrant_compat.routing",
    "Strategy": "qdrant_compat.enums",
    "Phase": "qdrant_compat.enums",
    "VectorState": "qdrant_compat.enums",
    "Relation": "qdrant_compat.enums",
    "Priority": "qdrant_compat.enums",
    # training side (the 'train' extra: torch, torchvision, onnx)
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
_ERRORS = (
    "CollectionNotFoundError", "CorruptArtifactError", "FingerprintMismatchError", "IncompatibleModelError",
    "InvalidArgumentError", "JobLockedError", "MissingExtraError", "ModelNotFoundError", "QdrantCompatError",
    "UnmanagedCollectionError", "UpgradeError",
)
_LAZY.update({name: "qdrant_compat.errors" for name in _ERRORS})

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from qdrant_compat.cards import ConverterCard, InputSpec, Lineage, ModelCard, parse_ref
    from qdrant_compat.client import CompatClient
    from qdrant_compat.enums import Phase, Priority, Relation, Strategy, VectorState
    from qdrant_compat.errors import (
        CollectionNotFoundError,
        CorruptArtifactError,
        FingerprintMismatchError,
        IncompatibleModelError,
        InvalidArgumentError,
        JobLockedError,
        MissingExtraError,
        ModelNotFoundError,
        QdrantCompatError,
        UnmanagedCollectionError,
        UpgradeError,
    )
    from qdrant_compat.metadata import CompatMeta, Edge, JobState, VectorEntry
    from qdrant_compat.registry import Registry
    from qdrant_compat.routing import Route, resolve_route
    from qdrant_compat.runtime.embedder import Embedder
    from qdrant_compat.store import Store, connect


__getattr__ = lazy_attributes("qdrant_compat", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "BCT_LOSSES",
    "CollectionNotFoundError",
    "CompatClient",
    "CompatMeta",
    "ConverterCard",
    "CorruptArtifactError",
    "Edge",
    "Embedder",
    "EmbeddingModel",
    "FingerprintMismatchError",
    "IncompatibleModelError",
    "InputSpec",
    "InvalidArgumentError",
    "JobLockedError",
    "JobState",
    "Lineage",
    "MissingExtraError",
    "ModelCard",
    "ModelConfig",
    "ModelNotFoundError",
    "Phase",
    "Priority",
    "QdrantCompatError",
    "Registry",
    "Relation",
    "Route",
    "Store",
    "Strategy",
    "TrainConfig",
    "TrainingSummary",
    "UnmanagedCollectionError",
    "UpgradeError",
    "VectorEntry",
    "VectorState",
    "connect",
    "export_and_register",
    "export_embedding_model",
    "parse_ref",
    "prepare_old_targets",
    "resolve_route",
    "save_checkpoint",
    "train_model",
]
