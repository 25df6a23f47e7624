"""The ``qdrant_compat`` block of a collection's metadata.

Qdrant merges collection metadata shallowly (a nested object is replaced whole), so the block is always
written as one read-modify-write of the single top-level key ``qdrant_compat``. It stays small: large or
fast-changing state (job checkpoints) lives elsewhere (see :mod:`qdrant_compat.upgrade`).

Example (``collection info --json``)::

    {"schema": 1, "read": "omniglot@1", "write": ["omniglot@1"],
     "vectors": {"omniglot@1": {"model": "omniglot@1", "fingerprint": "9c0f…", "dim": 64,
                                 "distance": "Cosine", "state": "active"}},
     "edges": [], "job": null}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qdrant_compat._config import from_dict, to_dict
from qdrant_compat.cards import ModelCard
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

META_KEY = "qdrant_compat"
META_SCHEMA = 1
VECTOR_STATES = ("active", "filling", "retired")


@dataclass
class VectorEntry:
    """One named vector and the model version whose vectors it holds."""

    model: str
    fingerprint: str
    dim: int
    distance: str = "Cosine"
    state: str = "active"
    filled: int | None = None

    def __post_init__(self) -> None:
        if self.state not in VECTOR_STATES:
            raise InvalidArgumentError(f"vector state {self.state!r} unknown; allowed: {list(VECTOR_STATES)}")

    @classmethod
    def for_card(cls, card: ModelCard, state: str = "active") -> VectorEntry:
        return cls(model=card.ref, fingerprint=card.fingerprint, dim=card.dim, distance=card.distance, state=state)


@dataclass
class Edge:
    """A measured compatibility edge: ``query`` model may search ``stored`` vectors via ``relation``."""

    query: str
    query_fingerprint: str
    stored: str
    stored_fingerprint: str
    relation: str  # "bct" or "adapter"
    converter: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompatMeta:
    vectors: dict[str, VectorEntry] = field(default_factory=dict)
    read: str = ""
    write: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    job: dict[str, Any] | None = None
    schema: int = META_SCHEMA

    def __post_init__(self) -> None:
        if self.schema != META_SCHEMA:
            raise CorruptArtifactError(
                f"collection metadata schema {self.schema} is not supported by this qdrant-compat (reads {META_SCHEMA})"
            )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompatMeta:
        return from_dict(cls, data, where=f"collection metadata '{META_KEY}'")

    def vectors_of(self, model_ref: str) -> list[str]:
        return [name for name, v in self.vectors.items() if v.model == model_ref and v.state != "retired"]

    def vector_for(self, card: ModelCard) -> str | None:
        """The named vector holding ``card``'s vectors (preferring the read vector)."""
        names = self.vectors_of(card.ref)
        if self.read in names:
            return self.read
        return names[0] if names else None


def read_block(metadata: dict[str, Any] | None) -> CompatMeta | None:
    if not metadata or META_KEY not in metadata:
        return None
    block = metadata[META_KEY]
    if not isinstance(block, dict):
        raise CorruptArtifactError(f"collection metadata '{META_KEY}' must be an object, got {type(block).__name__}")
    return CompatMeta.from_dict(block)
