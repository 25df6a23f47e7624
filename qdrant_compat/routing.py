"""Which stored vector a query model may search, and how.

Rules, in order of preference:

1. the query model is the stored model (same name, version *and* fingerprint): search directly;
2. a recorded ``bct`` edge from the query model to a stored model, whose criterion held: search the
   stored vector directly (the new embeddings live in the old space);
3. a registered new->old adapter (converter) from the query model to a stored model: transform the query,
   then search.

Same name and version with another fingerprint is always an error. Anything else raises
:class:`~qdrant_compat.errors.IncompatibleModelError` naming what is stored and what would bridge it.

Writes follow the same routes (:func:`plan_write`): every vector the collection takes new points in must be
reachable, a vector an upgrade is filling is written too where it can be, a blue-green upgrade's mirror takes
the same points under its own metadata, and a cutover's window refuses (or, for the model being cut over to,
holds back: :func:`awaits_switch`) what would be lost by the switch. These are rules on metadata alone; the
client reads the blocks and does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdrant_compat.cards import ModelCard
from qdrant_compat.enums import Layout, Phase, Relation, VectorState, Via
from qdrant_compat.errors import FingerprintMismatchError, IncompatibleModelError
from qdrant_compat.metadata import CompatMeta


@dataclass(frozen=True)
class Route:
    vector: str
    stored_model: str
    via: Via
    converter: str | None = None
    calibration: tuple[float, float] | None = None  # a, b: route scores -> the query model's own scale

    def describe(self) -> str:
        if self.via == Via.DIRECT:
            return f"vector '{self.vector}' directly"
        if self.via == Via.BCT:
            return f"vector '{self.vector}' ({self.stored_model}) through the measured bct edge"
        return f"vector '{self.vector}' ({self.stored_model}) through adapter {self.converter}"


def check_fingerprint(card: ModelCard, meta: CompatMeta, collection: str) -> None:
    for name, entry in meta.vectors.items():
        if entry.model == card.ref and entry.fingerprint != card.fingerprint:
            raise FingerprintMismatchError(
                f"collection '{collection}' stores {card.ref} with fingerprint {entry.fingerprint[:12]}… in vector "
                f"'{name}', but the model given has fingerprint {card.fingerprint[:12]}…: same name and version, "
                "different bytes; register the new bytes under a new version"
            )


def candidate_routes(card: ModelCard, meta: CompatMeta) -> list[Route]:
    """Every usable route, best first, ignoring fill state."""
    routes: list[Route] = []
    order = sorted(meta.vectors, key=lambda n: n != meta.read)  # the read vector first
    for name in order:
        entry = meta.vectors[name]
        if entry.state == VectorState.RETIRED:
            continue
        if entry.model == card.ref and entry.fingerprint == card.fingerprint:
            routes.append(Route(name, entry.model, Via.DIRECT))
    for edge in meta.edges:
        if edge.query != card.ref or edge.query_fingerprint != card.fingerprint:
            continue
        if edge.relation == Relation.BCT and edge.evidence.get("criterion_met") is False:
            continue
        for name in order:
            entry = meta.vectors[name]
            if entry.state != VectorState.RETIRED and entry.model == edge.stored and entry.fingerprint == edge.stored_fingerprint:
                cal = edge.evidence.get("score_calibration")
                routes.append(Route(name, entry.model, Via(edge.relation.value), edge.converter,
                                    (float(cal["a"]), float(cal["b"])) if isinstance(cal, dict) else None))
    return routes


def resolve_route(card: ModelCard, meta: CompatMeta, collection: str, *, prefer: str | None = None) -> Route:
    """The best route for a query with ``card`` on ``collection``.

    Raises:
        FingerprintMismatchError: same ``name@version`` stored with other bytes.
        IncompatibleModelError: no route; the message lists stored versions and the ways to bridge.
    """
    check_fingerprint(card, meta, collection)
    routes = candidate_routes(card, meta)
    complete = [r for r in routes if meta.vectors[r.vector].state == VectorState.ACTIVE]
    if prefer:
        complete = [r for r in complete if r.vector == prefer] or complete
    if complete:
        return complete[0]
    stored = sorted({v.model for v in meta.vectors.values() if v.state != VectorState.RETIRED})
    refused = [
        e for e in meta.edges
        if e.query == card.ref and e.relation == Relation.BCT and e.evidence.get("criterion_met") is False
    ]
    why = ""
    if refused:
        ev = refused[0].evidence
        why = (
            f" The bct edge to {refused[0].stored} was revoked: {ev['revoked']}." if ev.get("revoked") else
            f" A bct edge to {refused[0].stored} was measured but failed the compatibility criterion "
            f"(cross top-1 {ev.get('cross_top1', '?')} vs old/old {ev.get('old_top1', '?')})."
        )
    raise IncompatibleModelError(
        f"collection '{collection}' holds vectors of {', '.join(stored) or 'no model'}; a query with {card.ref} "
        f"cannot search them.{why} To bridge: train {card.name} backward-compatibly with --old-model and record "
        "the edge (evaluate --record), register a new->old adapter (converter fit), or upgrade the collection "
        f"to {card.ref} (upgrade plan)."
    )


@dataclass(frozen=True)
class QueryPlan:
    """How one query runs: ``route`` alone, or (``partial`` set) the query model's own vector that is still
    being filled, searched where it exists, merged by score with ``route`` for the points it lacks."""

    route: Route
    partial: str | None = None


def plan_query(card: ModelCard, meta: CompatMeta, collection: str) -> QueryPlan:
    """Like :func:`resolve_route`, but aware of a partly filled vector of the query model itself.

    Raises:
        IncompatibleModelError: the query model's vector is being filled and no compatible route reaches
            the points it lacks (query with the old model until cutover).
    """
    check_fingerprint(card, meta, collection)
    routes = candidate_routes(card, meta)
    own_filling = [r.vector for r in routes if r.via == Via.DIRECT and meta.vectors[r.vector].state == VectorState.FILLING]
    complete = [r for r in routes if meta.vectors[r.vector].state == VectorState.ACTIVE]
    if complete and complete[0].via == Via.DIRECT:
        return QueryPlan(complete[0])
    if own_filling:
        if complete:
            return QueryPlan(complete[0], partial=own_filling[0])
        stored = sorted({v.model for v in meta.vectors.values() if v.state == VectorState.ACTIVE})
        raise IncompatibleModelError(
            f"collection '{collection}': vector '{own_filling[0]}' for {card.ref} is still being filled and no "
            f"compatible route from {card.ref} reaches the other points ({', '.join(stored)}); query with "
            f"{' or '.join(stored)} until 'upgrade cutover', or register a new->old adapter"
        )
    return QueryPlan(resolve_route(card, meta, collection))


# ------------------------------------------------------------------------------------------------------ writes
def write_routes(card: ModelCard, meta: CompatMeta, collection: str) -> list[Route]:
    """Named vectors a write with ``card`` fills: every ``write`` vector (each must be reachable), plus any vector
    being filled by an upgrade that ``card`` can reach, so no point written mid-upgrade is lost.

    Raises:
        FingerprintMismatchError: same ``name@version`` stored with other bytes.
        IncompatibleModelError: a ``write`` vector has no route from ``card``, or a cutover is checking that every
            point holds a vector ``card`` cannot write.
    """
    check_fingerprint(card, meta, collection)
    routes: dict[str, Route] = {}
    for r in candidate_routes(card, meta):
        routes.setdefault(r.vector, r)
    job = meta.job
    if job is not None and job.phase == Phase.CUTTING_OVER and job.target not in routes:
        # the cutover guard: the cutover is checking that every point holds the target, so a point written now
        # without it would become unfindable after the switch
        raise IncompatibleModelError(
            f"collection '{collection}' is cutting over to '{job.target}' ({job.target_model}); {card.ref} cannot "
            "write that vector, so this write is refused rather than lost: retry after the cutover (then write with "
            f"{job.target_model}) or after a rollback"
        )
    missing = [v for v in meta.write if v not in routes]
    if missing or not meta.write:
        wanted = ", ".join(f"'{v}' ({meta.vectors[v].model})" for v in (missing or meta.write))
        raise IncompatibleModelError(
            f"collection '{collection}' takes new points in {wanted}; {card.ref} has no route there. "
            f"Write with {' or '.join(sorted({meta.vectors[v].model for v in meta.write}))}, or record a bct "
            "edge / register an adapter first"
        )
    extra = [r for v, r in routes.items() if v not in meta.write and meta.vectors[v].state == VectorState.FILLING]
    return [routes[v] for v in meta.write] + extra


def awaits_switch(card: ModelCard, meta: CompatMeta, collection: str) -> bool:
    """A blue-green cutover to ``card``'s model is checking ``collection`` (the old one) against the new one: a
    write by that model waits for the alias switch and then goes to the new collection, rather than be refused
    by :func:`write_routes`."""
    job = meta.job
    return job is not None and job.phase == Phase.CUTTING_OVER and job.layout == Layout.BLUE_GREEN \
        and job.target_model == card.ref and job.green is not None and job.green != collection


@dataclass(frozen=True)
class WriteTarget:
    """One collection a write goes to, and the routes (vectors) it fills there."""

    collection: str
    routes: tuple[Route, ...]


def plan_write(card: ModelCard, collection: str, meta: CompatMeta, *, name: str | None = None,
               mirror_meta: CompatMeta | None = None) -> list[WriteTarget]:
    """Where a write with ``card`` into ``collection`` (``meta``: its block, with the model's own edges) goes: the
    collection itself and, while a blue-green upgrade fills a collection beside it (``meta.mirror``, whose block is
    ``mirror_meta``), that one too, under its own metadata. Both are checked before anything is written.
    ``name``: what the caller called the collection (an alias), for messages.

    Raises:
        FingerprintMismatchError, IncompatibleModelError: as :func:`write_routes`, for either collection.
        ValueError: ``meta`` names a mirror and ``mirror_meta`` is not given.
    """
    out = [WriteTarget(collection, tuple(write_routes(card, meta, name or collection)))]
    if meta.mirror:
        if mirror_meta is None:
            raise ValueError(f"collection '{collection}' mirrors into '{meta.mirror}': its metadata is needed")
        out.append(WriteTarget(meta.mirror, tuple(write_routes(card, mirror_meta, meta.mirror))))
    return out
