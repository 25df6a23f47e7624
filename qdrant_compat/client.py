"""CompatClient: a Qdrant client that knows which model made which vectors.

It composes (never subclasses) a :class:`qdrant_client.QdrantClient`. Every write and every query names
its model; the collection's ``qdrant_compat`` metadata decides whether it is allowed and where it goes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from qdrant_compat.cards import ModelCard
from qdrant_compat.enums import Mark, Relation, Via
from qdrant_compat.errors import (
    CollectionNotFoundError,
    IncompatibleModelError,
    InvalidArgumentError,
    UnmanagedCollectionError,
    UpgradeError,
)
from qdrant_compat.metadata import META_KEY, CompatMeta, Edge, VectorEntry, read_block
from qdrant_compat.registry import Registry
from qdrant_compat.results import CollectionReport, CollectionSummary, VectorInfo
from qdrant_compat.routing import QueryPlan, Route, awaits_switch, check_fingerprint, plan_query, plan_write, resolve_route
from qdrant_compat.runtime.onnx import ConverterRuntime
from qdrant_compat.store import DEFAULT_PATH, Store, both, check_point_ids, connect, has_vector, lacks_vector, replace_payload, rescored

log = logging.getLogger(__name__)
PROVENANCE_KEY = "_qdrant_compat"  # per-point payload: {provenance_key(vector): "extracted" | "converted" | ...}
STAMP_KEY = "_stamp"  # in the same field: changes with every write through CompatClient (never a vector's key)
MAX_ABS_VALUE = 1e15  # larger components overflow float32 when Qdrant normalises (a 1e30 vector becomes zeros)
__all__ = ["DEFAULT_PATH", "PROVENANCE_KEY", "CompatClient", "as_matrix", "connect", "user_payload"]


def _without_internal(hits: list[models.ScoredPoint]) -> list[models.ScoredPoint]:
    return [h if not h.payload or PROVENANCE_KEY not in h.payload else
            replace_payload(h, user_payload(h.payload)) for h in hits]


def user_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """A point's payload without qdrant-compat's provenance field: what the user wrote."""
    return {k: v for k, v in (payload or {}).items() if k != PROVENANCE_KEY}


def check_limit(limit: Any) -> int:
    """A query's ``limit``: an integer >= 1.

    @private
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise InvalidArgumentError(f"limit must be an integer >= 1 (the number of hits), got {limit!r}")
    return int(limit)


def as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """Validate vectors: 2-D ``(n, dim)`` (or one ``(dim,)``), finite, non-zero."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidArgumentError(f"{what}: expected vectors of dimension {dim}, got shape {tuple(np.shape(vectors))}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidArgumentError(
            f"{what}: {int(bad.sum())} vector(s) contain NaN or infinity (first at row {int(np.flatnonzero(bad)[0])}); "
            "only finite values are allowed"
        )
    big = (np.abs(arr) > MAX_ABS_VALUE).any(axis=1)
    if big.any():
        raise InvalidArgumentError(
            f"{what}: {int(big.sum())} vector(s) have components beyond ±{MAX_ABS_VALUE:.0e} (first at row "
            f"{int(np.flatnonzero(big)[0])}); Qdrant would store them as zeros. Normalise them first"
        )
    zero = np.linalg.norm(arr, axis=1) == 0
    if zero.any():
        raise InvalidArgumentError(f"{what}: {int(zero.sum())} zero vector(s) (first at row {int(np.flatnonzero(zero)[0])})")
    return arr


class CompatClient:
    """Versioned collections on top of a QdrantClient.

    Args:
        client: an existing QdrantClient to wrap; otherwise one is made from ``location``/``path``/``url``.
        store: a :class:`~qdrant_compat.store.Store` to use instead (the one seam to the backend; a test or
            another backend passes its own).
        registry: a :class:`Registry` (or its root folder) used to resolve ``"name@version"`` references.
        meta_ttl: seconds a query may reuse the collection metadata it read (0: read it every time). Writes
            and upgrade steps always read it fresh.

    Example:
        >>> cc = CompatClient(location=":memory:", registry="artifacts")
        >>> cc.create_collection("gallery", "omniglot@1")
        >>> cc.upsert("gallery", "omniglot@1", vectors, payloads=payloads)
        >>> hits = cc.query("gallery", "omniglot@1", query_vector, limit=5)
    """

    def __init__(
        self,
        client: QdrantClient | None = None,
        *,
        location: str | None = None,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        registry: Registry | str | Path | None = None,
        meta_ttl: float = 1.0,
        store: Store | None = None,
    ) -> None:
        if store is not None and (client is not None or location or path or url or api_key):
            raise InvalidArgumentError("give a store, or a client / location / path / url, not both")
        self.store = store if store is not None else Store(
            client if client is not None else connect(location=location, path=path, url=url, api_key=api_key))
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self.converters = ConverterRuntime(self.registry)
        self.meta_ttl = meta_ttl
        self.cutover_wait = 30.0  # seconds a write by the model a blue-green cutover switches to waits for the switch
        self._meta_cache: dict[str, tuple[float, CompatMeta]] = {}
        self._adapter_cache: tuple[float, list[Any]] | None = None
        self._alias_cache: dict[str, tuple[float, str]] = {}

    @property
    def qdrant(self) -> QdrantClient:
        """The wrapped QdrantClient, for the caller's own calls (the library itself goes through :attr:`store`)."""
        return self.store.client

    # ------------------------------------------------------------- helpers
    def card(self, model: ModelCard | str) -> ModelCard:
        """Resolve a reference through the registry (verifying bytes); a card is checked against it if registered.
        The registry verifies a model once per state of its files (:meth:`Registry.verified_card`).
        """
        if isinstance(model, ModelCard):
            if not model.fingerprint:
                raise InvalidArgumentError(f"model card {model.ref} has no fingerprint: register the model first")
            if self.registry.has_model(model.ref):
                verified = self.registry.verified_card(model.ref)
                if verified.fingerprint != model.fingerprint:
                    self.registry.get_model(model)  # raises FingerprintMismatchError with both hashes
            return model
        return self.registry.verified_card(model)

    def physical(self, name: str, *, fresh: bool = False) -> str:
        """The collection ``name`` is now: itself, or the one the alias ``name`` points at.

        Every query and write resolves the name once and then reads the metadata of, and searches or writes,
        that one collection: an alias switched meanwhile (a blue-green cutover) can never pair one collection's
        vector names with the other's points. Queries reuse a resolution for ``meta_ttl`` seconds (the old
        collection stays complete until cleanup); writes (``fresh``) resolve every time.

        @private
        """
        hit = self._alias_cache.get(name)
        if not fresh and hit is not None and time.monotonic() - hit[0] < self.meta_ttl:
            return hit[1]
        coll = self.store.resolve(name)
        self._alias_cache[name] = (time.monotonic(), coll)
        return coll

    def cached_meta(self, name: str) -> CompatMeta:
        """The metadata of ``name``, cached for ``meta_ttl`` seconds (internal: routing reads it per call).

        @private
        """
        hit = self._meta_cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.meta_ttl:
            return hit[1]
        return self.get_meta(name)

    def get_meta(self, name: str) -> CompatMeta:
        """The collection's qdrant-compat block, read fresh.

        Raises:
            CollectionNotFoundError, UnmanagedCollectionError.
        """
        meta = read_block(self.store.metadata(name))
        if meta is None:
            raise UnmanagedCollectionError(
                f"collection '{name}' has no qdrant-compat metadata; declare which model made its vectors with "
                f"'qdrant-compat collection adopt {name} --model NAME@VERSION'"
            )
        self._meta_cache[name] = (time.monotonic(), meta)
        return meta

    def put_meta(self, name: str, meta: CompatMeta) -> None:
        """Write the metadata block (internal: the upgrade commands own every write of it).

        @private
        """
        self.store.set_metadata(name, META_KEY, meta.to_dict())
        self._meta_cache.pop(name, None)

    def with_model_edges(self, meta: CompatMeta, card: ModelCard) -> CompatMeta:
        """``meta`` plus the edges ``card`` brings itself: its measured bct lineage, and registered converters
        from its space. Collection-recorded edges come first.

        @private
        """
        extra: list[Edge] = []
        lin = card.lineage
        # evidence of unknown origin is never acted on, except a failed criterion (it only ever refuses)
        if lin.relation == Relation.BCT and lin.parent and lin.parent_fingerprint and lin.evidence \
                and (lin.evidence.get("criterion_met") is False or self.registry.vouches_for(card)):
            extra.append(Edge(query=card.ref, query_fingerprint=card.fingerprint, stored=lin.parent,
                              stored_fingerprint=lin.parent_fingerprint, relation=Relation.BCT, evidence=dict(lin.evidence)))
        for conv in self._adapters():
            # a head from this model's space into a stored model's space serves queries (new->old adapters) and
            # writes (old->new rewrites while an upgrade fills the new vector)
            if conv.source_fingerprint == card.fingerprint:
                extra.append(Edge(query=card.ref, query_fingerprint=card.fingerprint, stored=conv.target,
                                  stored_fingerprint=conv.target_fingerprint, relation=Relation.ADAPTER, converter=conv.id,
                                  evidence=dict(conv.fit)))
        # an edge the collection records for the same pair wins (e.g. one revoked by a rollback)
        recorded = {(e.query, e.stored, e.relation) for e in meta.edges}
        extra = [e for e in extra if (e.query, e.stored, e.relation) not in recorded]
        if not extra:
            return meta
        return dataclasses.replace(meta, edges=[*meta.edges, *extra])

    def _adapters(self) -> list[Any]:
        stamp = self.registry.converters_stamp()
        if self._adapter_cache is None or self._adapter_cache[0] != stamp:
            self._adapter_cache = (stamp, self.registry.list_converters())
        return self._adapter_cache[1]

    # ---------------------------------------------------------- collections
    def create_collection(
        self, name: str, model: ModelCard | str, *, exist_ok: bool = False, on_disk: bool | None = None
    ) -> CompatMeta:
        """Create a collection with one named vector for ``model`` (named ``name@version``)."""
        card = self.card(model)
        if self.store.exists(name):
            if exist_ok:
                meta = self.get_meta(name)
                check_fingerprint(card, meta, name)
                if not meta.vectors_of(card.ref):
                    raise IncompatibleModelError(
                        f"collection '{name}' exists with {', '.join(v.model for v in meta.vectors.values())}, "
                        f"not {card.ref}"
                    )
                return meta
            raise InvalidArgumentError(f"collection '{name}' already exists (use exist_ok / --exist-ok)")
        meta = CompatMeta(vectors={card.ref: VectorEntry.for_card(card)}, read=card.ref, write=[card.ref])
        self.store.create(name, {card.ref: (card.dim, card.distance)}, metadata={META_KEY: meta.to_dict()}, on_disk=on_disk)
        log.info("created collection %s for %s", name, card.ref)
        return meta

    def adopt_collection(self, name: str, model: ModelCard | str, *, vector_name: str | None = None,
                         dry_run: bool = False) -> CompatMeta:
        """Declare which model made an existing (legacy) collection's vectors (no point is touched).

        To prove it first, see :func:`qdrant_compat.adoption.adopt` (``--verify``).

        Raises:
            InvalidArgumentError: the vector does not exist, or its size/distance differ from the model's.
        """
        card = self.card(model)
        if read_block(self.store.metadata(name)) is not None:
            raise InvalidArgumentError(f"collection '{name}' is already managed by qdrant-compat (see collection info)")
        params = self.store.vector_shapes(name)
        if vector_name is None:
            if len(params) != 1:
                raise InvalidArgumentError(
                    f"collection '{name}' has vectors {sorted(params)}; say which one with vector_name / --vector"
                )
            vector_name = next(iter(params))
        if vector_name not in params:
            raise InvalidArgumentError(f"collection '{name}' has no vector '{vector_name}'; it has {sorted(params)}")
        p = params[vector_name]
        if p.dim != card.dim:
            raise IncompatibleModelError(
                f"vector '{vector_name}' of '{name}' has dimension {p.dim} but {card.ref} makes {card.dim}-d vectors"
            )
        if p.distance != card.distance:
            raise IncompatibleModelError(
                f"vector '{vector_name}' of '{name}' uses {p.distance} but {card.ref} is a {card.distance} model"
            )
        meta = CompatMeta(vectors={vector_name: VectorEntry.for_card(card)}, read=vector_name, write=[vector_name])
        if dry_run:
            return meta
        self.put_meta(name, meta)
        log.info("adopted collection %s: vector '%s' = %s", name, vector_name, card.ref)
        return meta

    def list_collections(self) -> list[CollectionSummary]:
        out = []
        for name in self.store.names():
            meta = read_block(self.store.metadata(name))
            out.append(CollectionSummary(name=name, managed=meta is not None,
                                         models=sorted({v.model for v in meta.vectors.values()}) if meta else []))
        return out

    def info(self, name: str) -> CollectionReport:
        """Metadata block plus live counts per named vector."""
        meta = self.get_meta(name)
        total = self.store.count(name)
        vectors = {v: VectorInfo(model=e.model, fingerprint=e.fingerprint, dim=e.dim, distance=e.distance, state=e.state,
                                 filled=e.filled, points=self.store.count_with_vector(name, v))
                   for v, e in meta.vectors.items()}
        return CollectionReport(collection=name, points=total, read=meta.read, write=list(meta.write), vectors=vectors,
                                edges=list(meta.edges), job=meta.job)

    def count_with_vector(self, name: str, vector: str) -> int:
        """Points of ``name`` holding ``vector`` (internal).

        @private
        """
        return self.store.count_with_vector(name, vector)

    def record_edge(self, name: str, edge: Edge) -> CompatMeta:
        """Add (or replace) a compatibility edge in the collection's metadata."""
        meta = self.get_meta(name)
        meta.edges = [e for e in meta.edges if not (e.query == edge.query and e.stored == edge.stored)] + [edge]
        self.put_meta(name, meta)
        return meta

    # --------------------------------------------------------------- writes
    def upsert(
        self,
        name: str,
        model: ModelCard | str,
        vectors: Any,
        *,
        ids: Sequence[int | str] | None = None,
        payloads: Sequence[dict[str, Any]] | None = None,
        batch_size: int = 256,
    ) -> list[int | str]:
        """Write points whose vectors ``model`` produced.

        The vectors go to every named vector the collection writes with this model (its own vector, or the
        stored vector of a model it has a measured ``bct`` edge to). Returns the ids written.

        Raises:
            IncompatibleModelError: the collection cannot take vectors of ``model``.
            InvalidArgumentError: wrong dimension, NaN/inf, zero vectors, ids/payloads of the wrong length.
        """
        card = self.card(model)
        coll, raw = self._write_view(name, card)
        # blue-green: the collection being filled beside this one takes the same points (routing.plan_write)
        mirror = self.with_model_edges(self._mirror_meta(name, raw.mirror), card) if raw.mirror else None
        dests = plan_write(card, coll, self.with_model_edges(raw, card), name=name, mirror_meta=mirror)
        arr = as_matrix(vectors, card.dim, f"upsert into '{name}' with {card.ref}")
        n = len(arr)
        ids = check_point_ids(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(n)]
        if len(ids) != n:
            raise InvalidArgumentError(f"{n} vectors but {len(ids)} ids")
        if payloads is not None and len(payloads) != n:
            raise InvalidArgumentError(f"{n} vectors but {len(payloads)} payloads")
        from qdrant_compat.metadata import provenance_key

        # a fresh stamp per write: a backfill that read this point earlier sees it changed and does not overwrite
        stamp = uuid.uuid4().hex[:16]
        for dest in dests:
            routes = dest.routes
            converted = {t.vector: self.transform(t, arr) for t in routes}
            prov: dict[str, str] = {provenance_key(t.vector): (Mark.EXTRACTED if t.via in (Via.DIRECT, Via.BCT)
                                                               else Mark.CONVERTED).value for t in routes}
            prov[STAMP_KEY] = stamp
            for s in range(0, n, batch_size):
                rows = range(s, min(n, s + batch_size))
                self.store.upsert(dest.collection, [ids[j] for j in rows],
                                  [{t.vector: converted[t.vector][j].tolist() for t in routes} for j in rows],
                                  [{**(dict(payloads[j]) if payloads is not None else {}), PROVENANCE_KEY: prov} for j in rows])
        return ids

    def _write_view(self, name: str, card: ModelCard) -> tuple[str, CompatMeta]:
        """The collection a write goes to now, and its metadata, read fresh.

        A blue-green cutover to ``card``'s model checks, while the alias still names the old collection, that
        both collections hold the same points, so writes into the old one are refused for that window; a write
        by the model being cut over to waits for the switch (at most :attr:`cutover_wait` seconds) and then goes
        to the new collection instead of being refused. Other writers are refused as before."""
        deadline = time.monotonic() + self.cutover_wait
        while True:
            coll = self.physical(name, fresh=True)
            meta = self.get_meta(coll)
            if not awaits_switch(card, meta, coll) or time.monotonic() >= deadline:
                return coll, meta
            time.sleep(0.05)

    def _mirror_meta(self, name: str, mirror: str) -> CompatMeta:
        try:
            return self.get_meta(mirror)
        except CollectionNotFoundError:
            raise UpgradeError(
                f"collection '{name}' copies every write to '{mirror}' (a blue-green upgrade fills it), but '{mirror}' "
                "does not exist; nothing was written. Run 'upgrade run' to recreate it, or 'upgrade rollback'"
            ) from None

    def delete(self, name: str, ids: Sequence[int | str]) -> None:
        """Delete points by id (from the collection being filled beside this one too, during a blue-green upgrade)."""
        ids = check_point_ids(ids)
        coll = self.physical(name, fresh=True)
        meta = self.get_meta(coll)
        if meta.mirror:
            self._mirror_meta(name, meta.mirror)
        self.store.delete_points(coll, ids)
        if meta.mirror:
            self.store.delete_points(meta.mirror, ids)

    # -------------------------------------------------------------- queries
    def transform(self, route: Route, vec: np.ndarray) -> np.ndarray:
        """Apply the route's adapter (if any) to query vectors (internal).

        @private
        """
        if route.via != Via.ADAPTER or route.converter is None:
            return vec
        return self.converters.apply(route.converter, vec)

    def route(self, name: str, model: ModelCard | str) -> Route:
        card = self.card(model)
        return resolve_route(card, self.with_model_edges(self.get_meta(name), card), name)

    def query(
        self,
        name: str,
        model: ModelCard | str,
        vector: Any,
        *,
        limit: int = 10,
        query_filter: models.Filter | None = None,
        with_payload: bool | list[str] = True,
        meta: CompatMeta | None = None,
        internal_payload: bool = False,
    ) -> list[models.ScoredPoint]:
        """Search with a vector made by ``model``; routed to a vector the model may search.

        Args:
            name: collection or alias.
            model: the model (``NAME@VERSION`` or its card) that made ``vector``.
            vector: one vector of the model's dimension.
            limit: number of hits.
            query_filter: a Qdrant filter on the payload.
            with_payload: as in qdrant-client.
            meta: the collection's metadata, when the caller has just read it.
            internal_payload: keep qdrant-compat's own per-point key (``_qdrant_compat``: marks and write stamps)
                in the hits' payload; by default hits carry only the user's payload.

        Raises:
            IncompatibleModelError: the collection holds no vectors this model may search (with why and how).
        """
        card = self.card(model)
        check_limit(limit)
        q = as_matrix(vector, card.dim, f"query on '{name}' with {card.ref}")
        if len(q) != 1:
            raise InvalidArgumentError(f"query takes one vector, got {len(q)}; use query_batch for several")
        for attempt in (0, 1):
            coll = self.physical(name, fresh=attempt == 1)
            plan = plan_query(card, self.with_model_edges(meta or self.cached_meta(coll), card), name)
            try:
                hits = self._search(coll, plan, q[0], limit=limit, query_filter=query_filter, with_payload=with_payload)
                return hits if internal_payload else _without_internal(hits)
            except CollectionNotFoundError:
                if attempt or coll == name:  # not a stale alias resolution: a real error
                    raise
                self._meta_cache.pop(coll, None)
        raise AssertionError("unreachable")

    def _search(self, name: str, plan: QueryPlan, q: np.ndarray, *, limit: int, query_filter: models.Filter | None,
                with_payload: bool | list[str]) -> list[models.ScoredPoint]:
        if plan.partial is None:
            qv = self.transform(plan.route, q[None])[0].tolist()
            return self.store.search(name, qv, using=plan.route.vector, limit=limit, flt=query_filter,
                                     with_payload=with_payload)
        # partial fill: the filled points through the new vector, the rest through the compatible route
        own = plan.partial
        a = self.store.search(name, q.tolist(), using=own, limit=limit, flt=both(query_filter, has_vector(own)),
                              with_payload=with_payload)
        qv = self.transform(plan.route, q[None])[0].tolist()
        b = self.store.search(name, qv, using=plan.route.vector, limit=limit, flt=both(query_filter, lacks_vector(own)),
                              with_payload=with_payload)
        if plan.route.calibration is not None:  # put the route's scores on the new space's scale
            ca, cb = plan.route.calibration
            b = [rescored(p, ca * p.score + cb) for p in b]
        return sorted([*a, *b], key=lambda p: -p.score)[:limit]

    def query_batch(
        self, name: str, model: ModelCard | str, vectors: Any, *, limit: int = 10, with_payload: bool = False,
        internal_payload: bool = False,
    ) -> list[list[models.ScoredPoint]]:
        """:meth:`query` for several vectors at once (one request where the route allows it)."""
        if with_payload and not internal_payload:
            return [_without_internal(h) for h in self.query_batch(name, model, vectors, limit=limit, with_payload=True,
                                                                    internal_payload=True)]
        card = self.card(model)
        check_limit(limit)
        coll = self.physical(name)
        meta = self.with_model_edges(self.cached_meta(coll), card)
        q = as_matrix(vectors, card.dim, f"query on '{name}' with {card.ref}")
        plan = plan_query(card, meta, name)
        if plan.partial is not None:
            return [self._search(coll, plan, v, limit=limit, query_filter=None, with_payload=with_payload) for v in q]
        qv = self.transform(plan.route, q)
        return self.store.search_batch(coll, [v.tolist() for v in qv], using=plan.route.vector, limit=limit,
                                       with_payload=with_payload)

    def scroll_all(self, name: str, *, with_vectors: bool | list[str] = False, batch: int = 512) -> Iterable[Any]:
        return self.store.scroll_all(name, with_vectors=with_vectors, batch=batch)

    def delete_collection(self, name: str) -> None:
        self.store.delete(name)

    def close(self) -> None:
        self.store.close()
