"""The one source of truth for every closed set of states and choices.

Each is a ``str`` enum: members compare equal to their value (``Phase.FILLED == "filled"``), JSON-encode
as their value, and the CLI builds its ``click.Choice`` lists from :func:`choices`. Unknown values read
from metadata or cards are an error that lists the allowed ones.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound="_StrEnum")


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:  # ``'active'``, as it appears in JSON and in the CLI
        return repr(self.value)

    @classmethod
    def parse(cls: type[E], value: object, what: str | None = None) -> E:
        """``value`` as a member; raises :class:`~qdrant_compat.errors.InvalidArgumentError` naming the allowed ones."""
        try:
            return cls(value)
        except ValueError:
            from qdrant_compat.errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"{what or cls.__name__.lower()} {value!r} unknown; allowed: {choices(cls)}"
            ) from None


class Strategy(_StrEnum):
    """How an upgrade fills the new model's vectors."""

    ADOPT = "adopt"  # a measured bct edge: the new model uses the stored vector, nothing rewritten
    CONVERT = "convert"  # an old->new head rewrites stored vectors, no image read
    BACKFILL = "backfill"  # re-extraction from the image each point references
    CONVERT_BACKFILL = "convert+backfill"  # convert everything first, then re-extract in priority order

    @property
    def converts(self) -> bool:
        return self in (Strategy.CONVERT, Strategy.CONVERT_BACKFILL)

    @property
    def extracts(self) -> bool:
        return self in (Strategy.BACKFILL, Strategy.CONVERT_BACKFILL)


class Phase(_StrEnum):
    """An upgrade job's phase."""

    PLANNED = "planned"
    RUNNING = "running"
    FILLED = "filled"
    CUTTING_OVER = "cutting_over"  # writers see it and must reach the target vector, or are refused
    CUT_OVER = "cut_over"
    ROLLED_BACK = "rolled_back"
    CLEANED = "cleaned"

    @property
    def open(self) -> bool:
        """A job in this phase is unfinished: no other upgrade may start, and ``upgrade run`` resumes it (except
        ``cutting_over``, which belongs to the cutover holding it)."""
        return self in (Phase.PLANNED, Phase.RUNNING, Phase.FILLED, Phase.CUTTING_OVER)


class VectorState(_StrEnum):
    """The state of one named vector."""

    ACTIVE = "active"  # complete, serves its model's queries
    FILLING = "filling"  # an upgrade is writing it
    RETIRED = "retired"  # after a cutover that could not keep it in sync: its model's queries are refused


class Relation(_StrEnum):
    """Why a query model may search vectors another model made."""

    BCT = "bct"  # trained backward-compatibly; measured
    ADAPTER = "adapter"  # a registered new->old (or old->new) head transforms the vectors


class Lineage(_StrEnum):
    """How a model version relates to its parent (its card's lineage); only a measured ``bct`` lineage may become
    a collection's :class:`Relation` edge."""

    BCT = "bct"  # trained backward-compatibly with the frozen parent
    INDEPENDENT = "independent"  # trained without the parent's constraint
    FINETUNE = "finetune"  # started from the parent's weights, no compatibility constraint


class Layout(_StrEnum):
    """Where an upgrade writes the new model's vectors."""

    IN_PLACE = "in_place"  # a second named vector in the same collection (embedded store, server >= 1.18)
    BLUE_GREEN = "blue_green"  # a new collection with named vectors, filled beside the old one; an alias switches


class Via(_StrEnum):
    """How a routed query reaches the stored vector."""

    DIRECT = "direct"
    BCT = "bct"
    ADAPTER = "adapter"


class Priority(_StrEnum):
    """Backfill order."""

    UNCERTAINTY = "uncertainty"
    RANDOM = "random"
    ID = "id"


class Direction(_StrEnum):
    """What a converter is for."""

    OLD_TO_NEW = "old_to_new"  # rewrite stored vectors
    NEW_TO_OLD = "new_to_old"  # adapt new queries to the old space


class Mark(_StrEnum):
    """A point's per-vector provenance mark (payload ``_qdrant_compat.<vector>``)."""

    EXTRACTED = "extracted"
    CONVERTED = "converted"
    MISSING = "missing"  # the image does not exist (404, no file): tried again only with --retry-missing
    FAILED = "failed"  # the image cannot be decoded or preprocessed, or the model's vector was not finite
    UNREACHABLE = "unreachable"  # its server did not answer after the retries: the next run tries again


class Count(_StrEnum):
    """The keys of an upgrade job's counters (``job.counts``): the points per mark, and two more."""

    EXTRACTED = "extracted"
    CONVERTED = "converted"
    MISSING = "missing"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    UNMARKED = "unmarked"  # backfill: holds the new vector but no mark (a crash between the two writes)
    CHANGED_DURING_RUN = "changed_during_run"  # re-written by an application while being re-extracted


def choices(enum: type[Enum]) -> list[str]:
    """The values of ``enum``, in declaration order (what the CLI offers)."""
    return [str(m.value) for m in enum]


__all__ = ["Count", "Direction", "Layout", "Mark", "Phase", "Priority", "Relation", "Strategy", "VectorState", "Via", "choices"]
