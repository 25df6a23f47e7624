"""One error root for everything qdrant-compat raises on purpose.

Every message says what is wrong and what is allowed (or what to do next), so the CLI can print it as
one line and a Python user can act on it without reading the source.
"""

from __future__ import annotations


class QdrantCompatError(Exception):
    """Root of all qdrant-compat errors."""


class InvalidArgumentError(QdrantCompatError, ValueError):
    """An argument has a value that is not allowed (wrong shape, NaN, unknown name, ...)."""


class ModelNotFoundError(QdrantCompatError, LookupError):
    """A model or converter reference is not in the registry."""


class CorruptArtifactError(QdrantCompatError):
    """An artifact on disk cannot be read (bad JSON, unreadable ONNX, missing file)."""


class FingerprintMismatchError(QdrantCompatError):
    """The bytes of a model do not match the fingerprint recorded for it."""


class CollectionNotFoundError(QdrantCompatError, LookupError):
    """The named Qdrant collection does not exist."""


class UnmanagedCollectionError(QdrantCompatError):
    """A collection exists but carries no qdrant-compat metadata (adopt it first)."""


class IncompatibleModelError(QdrantCompatError):
    """A write or a query uses a model the collection cannot serve."""


class UpgradeError(QdrantCompatError):
    """An upgrade step cannot run in the collection's current state."""


class JobLockedError(UpgradeError):
    """Another process holds the lock of an upgrade job."""




class MissingExtraError(QdrantCompatError, ImportError):
    """A feature needs an optional extra that is not installed (the message names the pip command)."""


def require_extra(extra: str, *modules: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``modules`` can be imported.

    Example: ``require_extra("train", "torch", "torchvision", feature="'train'")``.
    """
    import importlib

    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise MissingExtraError(
            f"{feature} needs {', '.join(missing)}, which is not installed; install the extra: "
            f"pip install \"qdrant-compat[{extra}]\""
        )


def require_torch(feature: str) -> None:
    """The training side (train, export, converter fit, model import from torch) needs the 'train' extra."""
    require_extra("train", "torch", "torchvision", "onnx", feature=feature)


__all__ = [
    "QdrantCompatError",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "CorruptArtifactError",
    "FingerprintMismatchError",
    "CollectionNotFoundError",
    "UnmanagedCollectionError",
    "IncompatibleModelError",
    "UpgradeError",
    "JobLockedError",
    "MissingExtraError",
    "require_extra",
    "require_torch",
]
