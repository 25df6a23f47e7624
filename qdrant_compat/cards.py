"""Model and converter cards: typed, schema-versioned JSON that travels with every artifact.

A card names a model version (``name@version``), its content fingerprint (sha256 of the ONNX bytes),
what it emits (dimension, distance, normalisation), what it eats (:class:`InputSpec`), where it came from
(:class:`Lineage`, with the compatibility figures measured for the edge) and how it was trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qdrant_compat._config import ShortRepr, from_dict, read_json, to_dict
from qdrant_compat.enums import Lineage as LineageRelation
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

CARD_SCHEMA = 1
DISTANCES = ("Cosine", "Dot", "Euclid")
RESIZE_POLICIES = ("resize", "center_crop")
RELATIONS = tuple(r.value for r in LineageRelation)  # a card stores the plain string
DIRECTIONS = ("old_to_new", "new_to_old")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # used with fullmatch: no trailing newline


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"{what} {value!r} is not allowed: use letters, digits, '_', '.', '-' (starting with a letter or digit, "
            "at most 128 characters)"
        )
    return value


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``"name@version"``.

    Raises:
        InvalidArgumentError: ``ref`` is not of that form.
    """
    if not isinstance(ref, str) or ref.count("@") != 1:
        raise InvalidArgumentError(f"model reference {ref!r} must look like NAME@VERSION, e.g. 'omniglot@1'")
    name, version = ref.split("@")
    return check_name(name, "model name"), check_name(version, "model version")


MAX_DIM = 65536  # Qdrant's largest vector size


@dataclass(frozen=True, repr=False)
class InputSpec(ShortRepr):
    """What the ONNX model expects: ``(n, channels, size, size)`` float32, ``(x/255 - mean) / std``."""

    size: int
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: str = "resize"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise InvalidArgumentError(f"input channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise InvalidArgumentError(
                f"input mean/std need {self.channels} value(s) each, got {len(self.mean)} and {len(self.std)}"
            )
        if self.resize not in RESIZE_POLICIES:
            raise InvalidArgumentError(f"resize policy {self.resize!r} unknown; allowed: {list(RESIZE_POLICIES)}")
        bad_mean = [m for m in self.mean if not math.isfinite(float(m))]
        bad_std = [v for v in self.std if not (math.isfinite(float(v)) and float(v) > 0)]
        if bad_mean or bad_std:
            raise InvalidArgumentError(
                f"input preprocessing (x/255 - mean) / std needs finite means and std > 0 (a std of 0 divides by zero); "
                f"got mean {list(self.mean)}, std {list(self.std)}")
        if int(self.size) < 8:
            raise InvalidArgumentError(f"input size must be >= 8 pixels, got {self.size}")


@dataclass(frozen=True, repr=False)
class Lineage(ShortRepr):
    """Where a version comes from. ``evidence`` holds the figures ``evaluate`` measured for the edge."""

    parent: str | None = None
    parent_fingerprint: str | None = None
    relation: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.relation is not None and self.relation not in RELATIONS:
            raise InvalidArgumentError(f"lineage relation {self.relation!r} unknown; allowed: {list(RELATIONS)}")
        if (self.parent is None) != (self.relation is None):
            raise InvalidArgumentError("lineage needs both a parent and a relation, or neither")


@dataclass(frozen=True, repr=False)
class ModelCard(ShortRepr):
    """Identity and contract of one model version."""

    name: str
    version: str
    dim: int
    input: InputSpec
    fingerprint: str = ""
    distance: str = "Cosine"
    normalized: bool = True
    classes: list[str] = field(default_factory=list)
    lineage: Lineage = field(default_factory=Lineage)
    training: dict[str, Any] = field(default_factory=dict)
    schema: int = CARD_SCHEMA
    seal: str = ""  # sha256 over every meaning-bearing field (see compute_seal), set by the registry

    def compute_seal(self) -> str:
        """sha256 of the card's meaning-bearing fields: identity, the ONNX fingerprint, dim, distance, input
        preprocessing, classes and lineage with its evidence. Any edit of ``card.json`` that changes what the
        model's vectors mean (``input.mean``, a forged ``criterion_met``, ``dim``) changes it."""
        d = self.to_dict()
        body = {k: d[k] for k in ("name", "version", "fingerprint", "dim", "distance", "normalized", "input",
                                  "classes", "lineage", "schema")}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def sealed(self) -> ModelCard:
        return replace(self, seal=self.compute_seal())

    def __post_init__(self) -> None:
        check_name(self.name, "model name")
        check_name(self.version, "model version")
        if not 0 < int(self.dim) <= MAX_DIM:
            raise InvalidArgumentError(f"model dim must be 1..{MAX_DIM} (Qdrant's largest vector), got {self.dim}")
        if self.distance not in DISTANCES:
            raise InvalidArgumentError(f"distance {self.distance!r} unknown; allowed: {list(DISTANCES)}")
        if self.schema != CARD_SCHEMA:
            raise CorruptArtifactError(f"model card schema {self.schema} is not supported (this build reads {CARD_SCHEMA})")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def with_(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model card") -> ModelCard:
        return from_dict(cls, data, where=where)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.from_dict(read_json(path), where=str(path))


@dataclass(frozen=True, repr=False)
class ConverterCard(ShortRepr):
    """A transformation head from ``source`` model space to ``target`` model space."""

    id: str
    kind: str
    source: str
    source_fingerprint: str
    target: str
    target_fingerprint: str
    direction: str
    dim_in: int
    dim_out: int
    fingerprint: str = ""
    fit: dict[str, Any] = field(default_factory=dict)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        check_name(self.id, "converter id")
        if self.direction not in DIRECTIONS:
            raise InvalidArgumentError(f"converter direction {self.direction!r} unknown; allowed: {list(DIRECTIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "converter card") -> ConverterCard:
        return from_dict(cls, data, where=where)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> ConverterCard:
        return cls.from_dict(read_json(path), where=str(path))

