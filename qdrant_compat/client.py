"""CompatClient: a Qdrant client that knows which model made which vectors.

It composes (never subclasses) a :class:`qdrant_client.QdrantClient`. Every write and every query names
its model; the collection's ``qdrant_compat`` metadata decides whether it is allowed and where it goes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from qdrant_compat.cards import ModelCard
from qdrant_compat.errors import (
    CollectionNotFoundError,
    IncompatibleModelError,
    InvalidArgumentError,
    UnmanagedCollectionError,
)
from qdrant_compat.metadata import META_KEY, CompatMeta, Edge, VectorEntry, read_block
from qdrant_compat.registry import Registry
from qdrant_compat.routing import QueryPlan, Route, check_fingerprint, plan_query, resolve_route

log = logging.getLogger(__name__)
DEFAULT_PATH = "qdrant_storage"
PROVENANCE_KEY = "_qdrant_compat"  # per-point payload: {provenance_key(vector): "extracted" | "converted" | ...}
_DISTANCES = {"Cosine": models.Distance.COSINE, "Dot": models.Distance.DOT, "Euclid": models.Distance.EUCLID}


def connect(
    *, location: str | None = None, path: str | None = None, url: str | None = None, api_key: str | None = None
) -> QdrantClient:
    """A QdrantClient for ``url`` (server), ``location`` (``":memory:"``) or ``path`` (embedded store).

    ``url`` and ``api_key`` default to ``QDRANT_URL`` / ``QDRANT_API_KEY``; with neither, the embedded
    store at ``path`` (default ``./qdrant_storage``) is used.
    """
    url = url or os.environ.get("QDRANT_URL") or None
    api_key = api_key or os.environ.get("QDRANT_API_KEY") or None
    if url:
        return QdrantClient(url=url, api_key=api_key)
    if location:
        return QdrantClient(location=location)
    return QdrantClient(path=str(path or DEFAULT_PATH))


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
    zero = np.linalg.norm(arr, axis=1) == 0
    if zero.any():
        raise InvalidArgumentError(f"{what}: {int(zero.sum())} zero vector(s) (first at row {int(np.flatnonzero(zero)[0])})")
    return arr


def _and(a: models.Filter | None, b: models.Filter) -> models.Filter:
    return b if a is None else models.Filter(must=[a, b])


class CompatClient:
    """Versioned collections on top of a QdrantClient.

    Args:
        client: an existing QdrantClient to wrap; otherwise one is made from ``location``/``path``/``url``.
        registry: a :class:`Registry` (or its root folder) used to resolve ``"name@version"`` references.
        meta_ttl: seconds a query may reuse the collection metadata it read (0: read it every time). Writes
            and upgrade steps always read it fresh.

    Example:
        >>> cc = CompatClient(location=":memory:", registry="artifacts")          # doctest: +SKIP
        >>> cc.create_collection("gallery", "omniglot@1")                         # doctest: +SKIP
        >>> cc.upsert("gallery", "omniglot@1", vectors, payloads=payloads)       # doctest: +SKIP
        >>> hits = cc.query("gallery", "omniglot@1", query_vector, limit=5)      # doctest: +SKIP
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
    ) -> None:
        self.qdrant = client if client is not None else connect(location=location, path=path, url=url, api_key=api_key)
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self._converters: dict[str, Any] = {}
        self._cards: dict[str, tuple[Any, ModelCard]] = {}
        self.meta_ttl = meta_ttl
        self._meta_cache: dict[str, tuple[float, CompatMeta]] = {}
        self._adapter_cache: tuple[float, list[Any]] | None = None

    # ------------------------------------------------------------- helpers
    def card(self, model: ModelCard | str) -> ModelCard:
        """Resolve a reference through the registry (verifying bytes); a card is checked against it if registered.

        Verified cards are remembered per ONNX file state (size, mtime), so a query does not re-hash the model;
        any change to the file makes the next call verify it again.
        """
        if isinstance(model, ModelCard):
            if not model.fingerprint:
                raise InvalidArgumentError(f"model card {model.ref} has no fingerprint: register the model first")
            if self.registry.has_model(model.ref):
                verified = self._verified(model.ref)
                if verified.fingerprint != model.fingerprint:
                    self.registry.get_model(model)  # raises FingerprintMismatchError with both hashes
            return model
        return self._verified(model)

    def _verified(self, ref: str) -> ModelCard:
        from qdrant_compat.cards import parse_ref

        name, version = parse_ref(ref)
        d = self.registry.root / "models" / name / version
        try:
            st = (d / "model.onnx").stat()
            cst = (d / "card.json").stat()
            key = (st.st_size, st.st_mtime_ns, cst.st_mtime_ns)
        except FileNotFoundError:
            key = None
        hit = self._cards.get(ref)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
        card = self.registry.get_model(ref).card
        if key is not None:
            self._cards[ref] = (key, card)
        return card

    def _exists(self, name: str) -> bool:
        return bool(self.qdrant.collection_exists(name))

    def _info(self, name: str) -> models.CollectionInfo:
        if not self._exists(name):
            known = ", ".join(sorted(c.name for c in self.qdrant.get_collections().collections)) or "none"
            raise CollectionNotFoundError(f"collection '{name}' does not exist (collections: {known})")
        return self.qdrant.get_collection(name)

    def cached_meta(self, name: str) -> CompatMeta:
        hit = self._meta_cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.meta_ttl:
            return hit[1]
        return self.get_meta(name)

    def get_meta(self, name: str) -> CompatMeta:
        """The collection's qdrant-compat block, read fresh.

        Raises:
            CollectionNotFoundError, UnmanagedCollectionError.
        """
        meta = read_block(self._info(name).config.metadata)
        if meta is None:
            raise UnmanagedCollectionError(
                f"collection '{name}' has no qdrant-compat metadata; declare which model made its vectors with "
                f"'qdrant-compat collection adopt {name} --model NAME@VERSION'"
            )
        self._meta_cache[name] = (time.monotonic(), meta)
        return meta

    def put_meta(self, name: str, meta: CompatMeta) -> None:
        self.qdrant.update_collection(name, metadata={META_KEY: meta.to_dict()})
        self._meta_cache.pop(name, None)

    def with_model_edges(self, meta: CompatMeta, card: ModelCard) -> CompatMeta:
        """``meta`` plus the edges ``card`` brings itself: its measured bct lineage, and registered converters
        from its space. Collection-recorded edges come first."""
        extra: list[Edge] = []
        lin = card.lineage
        if lin.relation == "bct" and lin.parent and lin.parent_fingerprint and lin.evidence:
            extra.append(Edge(query=card.ref, query_fingerprint=card.fingerprint, stored=lin.parent,
                              stored_fingerprint=lin.parent_fingerprint, relation="bct", evidence=dict(lin.evidence)))
        for conv in self._adapters():
            # a head from this model's space into a stored model's space serves queries (new->old adapters) and
            # writes (old->new rewrites while an upgrade fills the new vector)
            if conv.source_fingerprint == card.fingerprint:
                extra.append(Edge(query=card.ref, query_fingerprint=card.fingerprint, stored=conv.target,
                                  stored_fingerprint=conv.target_fingerprint, relation="adapter", converter=conv.id,
                                  evidence=dict(conv.fit)))
        if not extra:
            return meta
        return dataclasses.replace(meta, edges=[*meta.edges, *extra])

    def _adapters(self) -> list[Any]:
        root = self.registry.root / "converters"
        stamp = root.stat().st_mtime if root.exists() else 0.0
        if self._adapter_cache is None or self._adapter_cache[0] != stamp:
            self._adapter_cache = (stamp, self.registry.list_converters())
        return self._adapter_cache[1]

    @staticmethod
    def _vector_params(info: models.CollectionInfo) -> dict[str, models.VectorParams]:
        v = info.config.params.vectors
        if isinstance(v, models.VectorParams):
            return {"": v}
        return dict(v or {})

    # ---------------------------------------------------------- collections
    def create_collection(
        self, name: str, model: ModelCard | str, *, exist_ok: bool = False, on_disk: bool | None = None
    ) -> CompatMeta:
        """Create a collection with one named vector for ``model`` (named ``name@version``)."""
        card = self.card(model)
        if self._exists(name):
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
        self.qdrant.create_collection(
            name,
            vectors_config={card.ref: models.VectorParams(size=card.dim, distance=_DISTANCES[card.distance], on_disk=on_disk)},
            metadata={META_KEY: meta.to_dict()},
        )
        log.info("created collection %s for %s", name, card.ref)
        return meta

    def adopt_collection(self, name: str, model: ModelCard | str, *, vector_name: str | None = None) -> CompatMeta:
        """Declare which model made an existing (legacy) collection's vectors.

        Raises:
            InvalidArgumentError: the vector does not exist, or its size/distance differ from the model's.
        """
        card = self.card(model)
        info = self._info(name)
        if read_block(info.config.metadata) is not None:
            raise InvalidArgumentError(f"collection '{name}' is already managed by qdrant-compat (see collection info)")
        params = self._vector_params(info)
        if vector_name is None:
            if len(params) != 1:
                raise InvalidArgumentError(
                    f"collection '{name}' has vectors {sorted(params)}; say which one with vector_name / --vector"
                )
            vector_name = next(iter(params))
        if vector_name not in params:
            raise InvalidArgumentError(f"collection '{name}' has no vector '{vector_name}'; it has {sorted(params)}")
        p = params[vector_name]
        if p.size != card.dim:
            raise IncompatibleModelError(
                f"vector '{vector_name}' of '{name}' has dimension {p.size} but {card.ref} makes {card.dim}-d vectors"
            )
        if p.distance != _DISTANCES[card.distance]:
            raise IncompatibleModelError(
                f"vector '{vector_name}' of '{name}' uses {p.distance.value} but {card.ref} is a {card.distance} model"
            )
        meta = CompatMeta(vectors={vector_name: VectorEntry.for_card(card)}, read=vector_name, write=[vector_name])
        self.put_meta(name, meta)
        log.info("adopted collection %s: vector '%s' = %s", name, vector_name, card.ref)
        return meta

    def list_collections(self) -> list[dict[str, Any]]:
        out = []
        for c in sorted(self.qdrant.get_collections().collections, key=lambda c: c.name):
            meta = read_block(self.qdrant.get_collection(c.name).config.metadata)
            out.append(
                {"name": c.name, "managed": meta is not None,
                 "models": sorted({v.model for v in meta.vectors.values()}) if meta else []}
            )
        return out

    def info(self, name: str) -> dict[str, Any]:
        """Metadata block plus live counts per named vector."""
        meta = self.get_meta(name)
        total = self.qdrant.count(name, exact=True).count
        vectors = {}
        for vname, entry in meta.vectors.items():
            filled = self.count_with_vector(name, vname) if vname else total
            vectors[vname] = {**entry.__dict__, "points": filled}
        return {"collection": name, "points": total, "read": meta.read, "write": meta.write,
                "vectors": vectors, "edges": [e.__dict__ for e in meta.edges], "job": meta.job}

    def count_with_vector(self, name: str, vector: str) -> int:
        if vector == "":
            return self.qdrant.count(name, exact=True).count
        flt = models.Filter(must=[models.HasVectorCondition(has_vector=vector)])
        return self.qdrant.count(name, count_filter=flt, exact=True).count

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
        meta = self.with_model_edges(self.get_meta(name), card)
        targets = self.write_targets(card, meta, name)
        arr = as_matrix(vectors, card.dim, f"upsert into '{name}' with {card.ref}")
        n = len(arr)
        ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(n)]
        if len(ids) != n:
            raise InvalidArgumentError(f"{n} vectors but {len(ids)} ids")
        if payloads is not None and len(payloads) != n:
            raise InvalidArgumentError(f"{n} vectors but {len(payloads)} payloads")
        from qdrant_compat.upgrade.state import provenance_key

        converted = {t.vector: self.transform(t, arr) for t in targets}
        prov = {provenance_key(t.vector): "extracted" if t.via in ("direct", "bct") else "converted" for t in targets}
        for s in range(0, n, batch_size):
            points = []
            for j in range(s, min(n, s + batch_size)):
                payload = dict(payloads[j]) if payloads is not None else {}
                payload[PROVENANCE_KEY] = prov
                vec = {t.vector: converted[t.vector][j].tolist() for t in targets}
                points.append(models.PointStruct(id=ids[j], vector=vec, payload=payload))
            self.qdrant.upsert(name, points=points, wait=True)
        return ids

    def write_targets(self, card: ModelCard, meta: CompatMeta, name: str) -> list[Route]:
        """Named vectors a write with ``card`` fills: every ``write`` vector (each must be reachable), plus
        any vector being filled by an upgrade that ``card`` can reach, so no point written mid-upgrade is lost."""
        check_fingerprint(card, meta, name)
        from qdrant_compat.routing import candidate_routes

        routes: dict[str, Route] = {}
        for r in candidate_routes(card, meta):
            routes.setdefault(r.vector, r)
        missing = [v for v in meta.write if v not in routes]
        if missing or not meta.write:
            wanted = ", ".join(f"'{v}' ({meta.vectors[v].model})" for v in (missing or meta.write))
            raise IncompatibleModelError(
                f"collection '{name}' takes new points in {wanted}; {card.ref} has no route there. "
                f"Write with {' or '.join(sorted({meta.vectors[v].model for v in meta.write}))}, or record a bct "
                "edge / register an adapter first"
            )
        extra = [r for v, r in routes.items() if v not in meta.write and meta.vectors[v].state == "filling"]
        return [routes[v] for v in meta.write] + extra

    # -------------------------------------------------------------- queries
    def transform(self, route: Route, vec: np.ndarray) -> np.ndarray:
        """Apply the route's adapter (if any) to query vectors."""
        if route.via != "adapter" or route.converter is None:
            return vec
        sess = self._converters.get(route.converter)
        if sess is None:
            from qdrant_compat.export.onnx import ort_session

            sess = ort_session(self.registry.get_converter(route.converter).onnx_path, ["CPUExecutionProvider"])
            self._converters[route.converter] = sess
        return np.asarray(sess.run(None, {sess.get_inputs()[0].name: vec.astype(np.float32)})[0])

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
    ) -> list[models.ScoredPoint]:
        """Search with a vector made by ``model``; routed to a vector the model may search.

        Raises:
            IncompatibleModelError: the collection holds no vectors this model may search (with why and how).
        """
        card = self.card(model)
        meta = self.with_model_edges(meta or self.cached_meta(name), card)
        q = as_matrix(vector, card.dim, f"query on '{name}' with {card.ref}")
        if len(q) != 1:
            raise InvalidArgumentError(f"query takes one vector, got {len(q)}; use query_batch for several")
        plan = plan_query(card, meta, name)
        return self._search(name, plan, q[0], limit=limit, query_filter=query_filter, with_payload=with_payload)

    def _search(self, name: str, plan: QueryPlan, q: np.ndarray, *, limit: int, query_filter: models.Filter | None,
                with_payload: bool | list[str]) -> list[models.ScoredPoint]:
        if plan.partial is None:
            qv = self.transform(plan.route, q[None])[0].tolist()
            res = self.qdrant.query_points(name, query=qv, using=plan.route.vector or None, limit=limit,
                                           query_filter=query_filter, with_payload=with_payload)
            return list(res.points)
        # partial fill: the filled points through the new vector, the rest through the compatible route
        own = plan.partial
        has_new = models.HasVectorCondition(has_vector=own)
        f_new = _and(query_filter, models.Filter(must=[has_new]))
        f_old = _and(query_filter, models.Filter(must_not=[has_new]))
        a = self.qdrant.query_points(name, query=q.tolist(), using=own, limit=limit, query_filter=f_new,
                                     with_payload=with_payload).points
        qv = self.transform(plan.route, q[None])[0].tolist()
        b = self.qdrant.query_points(name, query=qv, using=plan.route.vector or None, limit=limit, query_filter=f_old,
                                     with_payload=with_payload).points
        if plan.route.calibration is not None:  # put the route's scores on the new space's scale
            ca, cb = plan.route.calibration
            b = [p.model_copy(update={"score": ca * p.score + cb}) for p in b]
        return sorted([*a, *b], key=lambda p: -p.score)[:limit]

    def query_batch(
        self, name: str, model: ModelCard | str, vectors: Any, *, limit: int = 10, with_payload: bool = False
    ) -> list[list[models.ScoredPoint]]:
        card = self.card(model)
        meta = self.with_model_edges(self.cached_meta(name), card)
        q = as_matrix(vectors, card.dim, f"query on '{name}' with {card.ref}")
        plan = plan_query(card, meta, name)
        if plan.partial is not None:
            return [self._search(name, plan, v, limit=limit, query_filter=None, with_payload=with_payload) for v in q]
        qv = self.transform(plan.route, q)
        reqs = [models.QueryRequest(query=v.tolist(), using=plan.route.vector or None, limit=limit, with_payload=with_payload)
                for v in qv]
        return [list(r.points) for r in self.qdrant.query_batch_points(name, requests=reqs)]

    def scroll_all(self, name: str, *, with_vectors: bool | list[str] = False, batch: int = 512) -> Iterable[Any]:
        offset = None
        while True:
            recs, offset = self.qdrant.scroll(name, limit=batch, offset=offset, with_vectors=with_vectors, with_payload=True)
            yield from recs
            if offset is None:
                break

    def delete_collection(self, name: str) -> None:
        self._info(name)
        self.qdrant.delete_collection(name)

    def close(self) -> None:
        self.qdrant.close()
