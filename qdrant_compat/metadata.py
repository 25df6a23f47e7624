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

import re
import time
from dataclasses import dataclass, field
from typing import Any

from qdrant_compat._config import ShortRepr, from_dict, to_dict
from qdrant_compat.cards import ModelCard
from qdrant_compat.enums import Count, Layout, Mark, Phase, Priority, Relation, Strategy, VectorState
from qdrant_compat.errors import CorruptArtifactError

META_KEY = "qdrant_compat"
META_SCHEMA = 1



def provenance_key(vector: str) -> str:
    """Payload sub-key for a vector's provenance: letters, digits and '_' only (filterable everywhere)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", vector) or "_default"

@dataclass(repr=False)
class VectorEntry(ShortRepr):
    """One named vector and the model version whose vectors it holds."""

    model: str
    fingerprint: str
    dim: int
    distance: str = "Cosine"
    state: VectorState = VectorState.ACTIVE
    filled: int | None = None

    def __post_init__(self) -> None:
        self.state = VectorState.parse(self.state, "vector state")  # type: ignore[assignment]

    @classmethod
    def for_card(cls, card: ModelCard, state: VectorState = VectorState.ACTIVE) -> VectorEntry:
        return cls(model=card.ref, fingerprint=card.fingerprint, dim=card.dim, distance=card.distance, state=state)


@dataclass(repr=False)
class Edge(ShortRepr):
    """A measured compatibility edge: ``query`` model may search ``stored`` vectors via ``relation``."""

    query: str
    query_fingerprint: str
    stored: str
    stored_fingerprint: str
    relation: Relation
    converter: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.relation = Relation.parse(self.relation, "edge relation")  # type: ignore[assignment]


@dataclass(repr=False)
class Lock(ShortRepr):
    """Who runs a job, until when (a dead holder never blocks forever)."""

    owner: str
    expires_at: float


@dataclass(repr=False)
class CleanupRecord(ShortRepr):
    """Cleanup's journal: the backup is recorded *before* the old vector is dropped, so an interrupted
    cleanup resumes the drop and never backs up a half-dropped collection again."""

    vector: str  # the vector dropped (in place), or "" when a blue-green cleanup drops the old collection
    backup: str
    started: float = field(default_factory=time.time)
    dropped: bool = False
    collection: str | None = None  # blue-green: the old collection dropped
    made: bool = True  # False: the backup's file is named (journaled first) but not written yet


@dataclass(repr=False)
class JobState(ShortRepr):
    """One upgrade job, kept in the collection's metadata so any machine can see and resume it."""

    id: str
    source: str
    source_model: str
    target: str
    target_model: str
    target_fingerprint: str
    strategy: Strategy
    converter: str | None = None
    priority: Priority = Priority.UNCERTAINTY
    image_field: str = "image_path"
    phase: Phase = Phase.PLANNED
    lock: Lock | None = None
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cleanup: CleanupRecord | None = None
    layout: Layout = Layout.IN_PLACE
    green: str | None = None  # blue-green, on the old collection's job: the new collection being filled
    blue: str | None = None  # blue-green, on the new collection's job: the old collection
    alias: str | None = None  # blue-green: the alias cutover and rollback switch
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    ERROR_LIMIT = 20  # a sample for the user; every point's own mark carries its reason

    def __post_init__(self) -> None:
        from qdrant_compat.errors import UpgradeError

        for name, enum in (("strategy", Strategy), ("phase", Phase), ("priority", Priority), ("layout", Layout)):
            try:
                setattr(self, name, enum(getattr(self, name)))
            except ValueError:
                raise UpgradeError(f"{name} {getattr(self, name)!r} unknown; allowed: {[m.value for m in enum]}") from None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobState:
        return from_dict(cls, d, where="collection metadata job")

    def bump(self, key: Count | Mark, n: int = 1) -> None:
        """Add ``n`` to the counter ``key`` (typed: a free string key would be a new counter nobody reads)."""
        self.counts[key.value] = self.counts.get(key.value, 0) + n

    def add_error(self, msg: str) -> None:
        if len(self.errors) < self.ERROR_LIMIT:
            self.errors.append(msg)


@dataclass(repr=False)
class CompatMeta(ShortRepr):
    vectors: dict[str, VectorEntry] = field(default_factory=dict)
    read: str = ""
    write: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    job: JobState | None = None
    mirror: str | None = None  # blue-green: every write through CompatClient also goes to this collection
    schema: int = META_SCHEMA

    def __post_init__(self) -> None:
        if self.schema != META_SCHEMA:
            raise CorruptArtifactError(
                f"collection metadata schema {self.schema} is not supported by this qdrant-compat (reads {META_SCHEMA})"
            )
        named = sorted(self.vectors)
        for what, names in (("read", [self.read] if self.vectors else []), ("write", self.write)):
            unknown = [n for n in names if n not in self.vectors]
            if unknown:
                raise CorruptArtifactError(
                    f"collection metadata '{META_KEY}': {what} names vector(s) {unknown} that it does not describe "
                    f"(vectors: {named})"
                )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompatMeta:
        return from_dict(cls, data, where=f"collection metadata '{META_KEY}'")

    def vectors_of(self, model_ref: str) -> list[str]:
        return [name for name, v in self.vectors.items() if v.model == model_ref and v.state != VectorState.RETIRED]

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
