"""Typed results of the library's read and upgrade commands; ``to_dict()`` is what ``--json`` prints.

The JSON schema of each is in ``docs/json-schema.json`` and the tests validate the CLI's output against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qdrant_compat._config import ShortRepr, to_dict, user_json
from qdrant_compat.metadata import Edge, JobState


class Result(ShortRepr):
    """A dataclass result with a JSON-ready ``to_dict()`` (enums as their values, timestamps ISO-8601 UTC) and a
    short repr."""

    def to_dict(self) -> dict[str, Any]:
        return user_json(to_dict(self))  # type: ignore[no-any-return]


@dataclass(repr=False)
class VectorInfo(Result):
    model: str
    fingerprint: str
    dim: int
    distance: str
    state: str
    filled: int | None
    points: int  # points holding this vector now


@dataclass(repr=False)
class CollectionReport(Result):
    """``collection info``: the metadata block plus live counts per named vector."""

    collection: str
    points: int
    read: str
    write: list[str]
    vectors: dict[str, VectorInfo]
    edges: list[Edge]
    job: JobState | None


@dataclass(repr=False)
class CollectionSummary(Result):
    """One row of ``collection list``."""

    name: str
    managed: bool
    models: list[str] = field(default_factory=list)


@dataclass(repr=False)
class VectorStatus(Result):
    model: str
    state: str
    points: int
    extracted: int
    converted: int
    missing: int
    failed: int
    unmarked: int = 0  # holds the vector, but its re-extraction mark was never written (a crash in between): redone
    unreachable: int = 0  # the image's server did not answer: the next run tries again
    indexed: int = 0  # written directly (index, upsert, or before the collection was adopted), not by an upgrade


@dataclass(repr=False)
class StatusReport(Result):
    """``upgrade status``."""

    collection: str
    points: int
    read: str
    write: list[str]
    vectors: dict[str, VectorStatus]
    job: JobState | None
    blue_green: dict[str, Any] | None = None  # blue, green, alias and where it points, mirroring
    lacking_target: int = 0  # points without the job's target vector (after a cutover: 'upgrade run' fills them)


@dataclass(repr=False)
class CutoverResult(Result):
    collection: str
    read: str
    source: str = ""
    target: str = ""
    points: int = 0
    not_extracted: int = 0
    source_kept_in_sync: bool = False
    already: bool = False
    dry_run: bool = False
    alias: str | None = None  # blue-green: the alias switched
    previous: str | None = None  # blue-green: the collection the alias pointed at before


@dataclass(repr=False)
class RollbackResult(Result):
    collection: str
    read: str
    dry_run: bool = False
    alias: str | None = None  # blue-green: the alias pointed back at ``collection``


@dataclass(repr=False)
class CleanupResult(Result):
    collection: str
    drops: str
    backup: str | None = None
    resumed: bool = False
    dry_run: bool = False
    drops_collection: bool = False  # blue-green: ``drops`` is the old collection, not a vector
    left_without_vector: int = 0  # points a raw writer wrote during the cleanup: no vector now ('upgrade run' fills them)
