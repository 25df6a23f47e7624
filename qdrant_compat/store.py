"""The one seam between qdrant-compat and Qdrant.

Every Qdrant call the library makes goes through :class:`Store`, over qdrant-client's *public* API only:
collection info and metadata, counting, scrolling, writing vectors and marks, adding and dropping a
named vector, aliases, backups, and what the backend can do (embedded or server, its version). Upgrade
steps, indexing and the CLI talk to a ``Store`` (or to :class:`~qdrant_compat.client.CompatClient`),
never to the raw client, so a server, a blue-green path or another backend changes this module alone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from qdrant_compat.cards import DISTANCES as CARD_DISTANCES
from qdrant_compat.errors import CollectionNotFoundError, CorruptArtifactError, InvalidArgumentError

log = logging.getLogger(__name__)
DEFAULT_PATH = "qdrant_storage"
# the card's distance names (cards.DISTANCES) as Qdrant's enum: the one place the two meet
DISTANCES = {name: models.Distance(name) for name in CARD_DISTANCES}
MIN_SERVER_FOR_NAMED_VECTORS = (1, 18)  # create_vector_name / delete_vector_name
BACKUP_FORMAT = "qdrant-compat-backup/1"


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
        # the version is read (and logged) by Store.capabilities when an operation needs it; qdrant-client's own
        # check runs in a thread and prints a UserWarning to stderr when the server cannot be reached
        return QdrantClient(url=url, api_key=api_key, check_compatibility=False)
    if location:
        return QdrantClient(location=location)
    return QdrantClient(path=str(path or DEFAULT_PATH))


SPEC_KEYS = ("url", "host", "port", "grpc_port", "prefer_grpc", "https", "prefix", "timeout", "check_compatibility", "path")


def _open_embedded(path: str, wait: float) -> QdrantClient:
    """The embedded store at ``path``, waiting up to ``wait`` s for another process to let go of it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return QdrantClient(path=path)
        except RuntimeError as exc:  # qdrant-client: "... is already accessed by another instance"
            if "already accessed" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise InvalidArgumentError(f"embedded store {path} is still held by another process after {wait:.0f}s; "
                                           "an embedded store is owned by one process at a time") from None
            time.sleep(0.2)


@dataclass(frozen=True)
class Capabilities:
    """What the backend behind a :class:`Store` can do."""

    embedded: bool
    version: str | None  # server version; None for the embedded store
    named_vector_changes: bool  # can add/drop a named vector of an existing collection
    snapshots: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("-")[0].split(".")[:2] if p.isdigit())


_COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}")


def check_collection_name(name: str) -> str:
    """Names a new collection may take: letters, digits, '_', '.', ':', '-', at most 255 (no '/', spaces, newlines)."""
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"collection name {name!r} is not allowed: use letters, digits, '_', '.', ':', '-' (starting with a letter "
            "or digit, at most 255 characters)"
        )
    return name


def check_point_ids(ids: Sequence[Any]) -> list[Any]:
    """Qdrant's point ids: unsigned 64-bit integers or UUID strings; anything else is refused here, naming the first
    bad id, before any point is written.

    Raises:
        InvalidArgumentError: the first id that is neither, with its position.
    """
    out = list(ids)
    for k, i in enumerate(out):
        if isinstance(i, bool) or not isinstance(i, (int, str)):
            ok = False
        elif isinstance(i, int):
            ok = 0 <= i < 1 << 64
        else:
            try:
                uuid.UUID(i)
                ok = True
            except ValueError:
                ok = False
        if not ok:
            raise InvalidArgumentError(
                f"point id {i!r} (position {k}) is not allowed: Qdrant takes unsigned integers or UUID strings; "
                f"to keep your own keys, use str(uuid.uuid5(namespace, key)) and keep the key in the payload")
    return out


def has_vector(vector: str) -> models.Filter:
    return models.Filter(must=[models.HasVectorCondition(has_vector=vector)])


def lacks_vector(vector: str) -> models.Filter:
    return models.Filter(must_not=[models.HasVectorCondition(has_vector=vector)])


def both(a: models.Filter | None, b: models.Filter) -> models.Filter:
    return b if a is None else models.Filter(must=[a, b])


def mark_is(key: str, value: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])


def mark_not_in(key: str, values: Sequence[str]) -> models.Filter:
    return models.Filter(must_not=[models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))])


def record_vector(rec: Any, name: str) -> list[float] | None:
    """A scrolled record's vector ``name`` (``""``: the unnamed vector), or None when it has none."""
    v = rec.vector
    if isinstance(v, dict):
        return v.get(name)  # type: ignore[no-any-return]
    return v if name == "" else None  # type: ignore[no-any-return]


class VectorShape(NamedTuple):
    """One named vector's shape in the house's terms (no Qdrant type leaks above the store)."""

    dim: int
    distance: str  # one of cards.DISTANCES


def rescored(hit: Any, score: float) -> Any:
    """``hit`` with another score (a calibrated route's), the record type left to the store."""
    return hit.model_copy(update={"score": score})


def replace_payload(hit: Any, payload: dict[str, Any] | None) -> Any:
    """``hit`` with another payload (the internal fields stripped)."""
    return hit.model_copy(update={"payload": payload})


@contextmanager
def _missing_collection(name: str) -> Iterator[None]:
    """A collection that is not there, as the house's error, whatever the backend says (a server answers 404, the
    embedded store raises ValueError)."""
    try:
        yield
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            raise CollectionNotFoundError(f"collection '{name}' not found") from exc
        raise
    except ValueError as exc:
        if "not found" in str(exc).lower():
            raise CollectionNotFoundError(f"collection '{name}' not found") from exc
        raise


class Store:
    """Qdrant, as qdrant-compat uses it.

    Args:
        client: the QdrantClient to use (kept as :attr:`client` for the caller's own calls).
    """

    def __init__(self, client: QdrantClient) -> None:
        self.client = client
        self._caps: Capabilities | None = None

    @classmethod
    def connect(cls, **kw: Any) -> Store:
        return cls(connect(**kw))

    # ----------------------------------------------------------- the backend
    @property
    def local_path(self) -> str | None:
        """The embedded store's folder, ``":memory:"``, or None for a server (from the client's public options)."""
        opts = self.client.init_options
        if opts.get("url") or opts.get("host"):
            return None
        if opts.get("path"):
            return str(opts["path"])
        return str(opts["location"]) if opts.get("location") == ":memory:" else None

    def capabilities(self) -> Capabilities:
        if self._caps is None:
            if self.local_path is not None:
                self._caps = Capabilities(embedded=True, version=None, named_vector_changes=True, snapshots=False)
            else:
                version = self.client.info().version
                log.info("Qdrant server version %s", version)
                self._caps = Capabilities(embedded=False, version=version,
                                          named_vector_changes=_version_tuple(version) >= MIN_SERVER_FOR_NAMED_VECTORS,
                                          snapshots=True)
        return self._caps

    def describe(self) -> str:
        """Where the data lives, for messages (never includes an API key)."""
        path = self.local_path
        if path == ":memory:":
            return "in-memory store"
        if path is not None:
            return f"embedded store {path}"
        opts = self.client.init_options
        return f"Qdrant server {opts.get('url') or opts.get('host')}"

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------- opened by another process
    def spec(self) -> dict[str, Any]:
        """How another process (a Ray worker) opens this store: the connection options, never a secret.

        The API key is not in it: a worker reads ``QDRANT_API_KEY`` from its own environment; ``api_key``
        says only whether one is needed.

        Raises:
            InvalidArgumentError: an in-memory store (no other process can reach it), or a client whose
                authentication cannot be carried without passing a secret (custom headers, a token provider).
        """
        opts = self.client.init_options
        if self.local_path == ":memory:":
            raise InvalidArgumentError("an in-memory store cannot be opened by another process; use an embedded "
                                       "store on disk (--path) or a Qdrant server (--url)")
        if opts.get("headers") or opts.get("auth_token_provider"):
            raise InvalidArgumentError("this client authenticates with custom headers or a token provider, which "
                                       "workers cannot be given without passing a secret; let the driver write")
        if self.local_path is not None:
            return {"path": self.local_path, "api_key": False}
        spec = {k: opts[k] for k in SPEC_KEYS if opts.get(k) is not None}
        spec["api_key"] = bool(opts.get("api_key"))
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, wait: float = 60.0) -> Store:
        """Open the store :meth:`spec` describes, in this process.

        An embedded store held by another process (the previous owner still exiting) is retried for ``wait``
        seconds.

        Raises:
            InvalidArgumentError: a server that needs an API key and no ``QDRANT_API_KEY`` here, or an
                embedded store still held after ``wait``.
        """
        opts = {k: v for k, v in spec.items() if k in SPEC_KEYS}
        if spec.get("api_key"):
            key = os.environ.get("QDRANT_API_KEY")
            if not key:
                raise InvalidArgumentError(
                    "the Qdrant server needs an API key and this process has no QDRANT_API_KEY in its environment; "
                    "set it in the workers' environment (it is never passed to them)")
            opts["api_key"] = key
        if "path" not in opts:
            return cls(QdrantClient(**opts))
        return cls(_open_embedded(str(opts["path"]), wait))

    @contextmanager
    def released(self, *, wait: float = 60.0) -> Iterator[None]:
        """Let another process own an embedded store for the block, then take it back (a server: nothing to do).

        Inside the block this Store must not be used; :attr:`client` is a new QdrantClient afterwards."""
        path = self.local_path
        if path is None:
            yield
            return
        self.spec()  # an in-memory store cannot be handed over: refused before anything is closed
        self.client.close()
        try:
            yield
        finally:
            self.client = _open_embedded(path, wait)

    # ---------------------------------------------------------- collections
    def exists(self, name: str) -> bool:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"collection name {name!r} is empty; give a collection's or an alias's name "
                                       f"(collections: {', '.join(self.names()) or 'none'})")
        return bool(self.client.collection_exists(name))

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def info(self, name: str) -> models.CollectionInfo:
        """Raises :class:`CollectionNotFoundError` naming the collections that do exist."""
        if not self.exists(name):
            raise CollectionNotFoundError(f"collection '{name}' does not exist (collections: {', '.join(self.names()) or 'none'})")
        return self.client.get_collection(name)

    def metadata(self, name: str) -> dict[str, Any]:
        return dict(self.info(name).config.metadata or {})

    def set_metadata(self, name: str, key: str, value: Any) -> None:
        """Replace one top-level metadata key (Qdrant merges metadata shallowly: the key is written whole)."""
        self.client.update_collection(name, metadata={key: value})

    def vector_params(self, name: str) -> dict[str, models.VectorParams]:
        """Named vectors and their Qdrant parameters; the unnamed vector is ``""`` (see :meth:`vector_shapes`)."""
        v = self.info(name).config.params.vectors
        if isinstance(v, models.VectorParams):
            return {"": v}
        return dict(v or {})

    def vector_shapes(self, name: str) -> dict[str, VectorShape]:
        """Named vectors as (dimension, distance in the cards' names): what callers above the store compare."""
        names = {d: n for n, d in DISTANCES.items()}
        return {v: VectorShape(int(p.size), names.get(p.distance, str(p.distance))) for v, p in self.vector_params(name).items()}

    def create(self, name: str, vectors: dict[str, tuple[int, str]], *, metadata: dict[str, Any] | None = None,
               on_disk: bool | None = None) -> None:
        """Create ``name`` with named vectors ``{vector: (dim, distance)}``."""
        check_collection_name(name)
        self.client.create_collection(
            name,
            vectors_config={v: models.VectorParams(size=dim, distance=DISTANCES[dist], on_disk=on_disk)
                            for v, (dim, dist) in vectors.items()},
            metadata=metadata,
        )

    def create_like(self, name: str, like: str, vectors: dict[str, str], extra: dict[str, tuple[int, str]], *,
                    metadata: dict[str, Any] | None = None) -> None:
        """Create ``name`` with ``like``'s vectors renamed by ``vectors`` (old name -> new name; ``""`` is the
        unnamed vector) and the same parameters (size, distance, on-disk, per-vector HNSW and quantisation),
        plus the ``extra`` named vectors, the same shard/replication settings and payload indexes.

        Raises:
            InvalidArgumentError: ``like`` has sparse vectors (not copied by this version).
        """
        check_collection_name(name)
        info = self.info(like)
        params = info.config.params
        if params.sparse_vectors:
            raise InvalidArgumentError(
                f"collection '{like}' has sparse vectors {sorted(params.sparse_vectors)}: a blue-green copy does not "
                "carry them yet; upgrade in place (Qdrant >= 1.18) instead"
            )
        have = self.vector_params(like)
        config = {vectors[v]: p for v, p in have.items()}
        config.update({v: models.VectorParams(size=dim, distance=DISTANCES[dist]) for v, (dim, dist) in extra.items()})
        self.client.create_collection(name, vectors_config=config, metadata=metadata,
                                      shard_number=params.shard_number, replication_factor=params.replication_factor,
                                      write_consistency_factor=params.write_consistency_factor)
        for fld, schema in (info.payload_schema or {}).items():
            if schema.data_type is not None:
                self.client.create_payload_index(name, fld, field_schema=schema.params or schema.data_type, wait=True)

    def delete(self, name: str) -> None:
        self.info(name)
        self.client.delete_collection(name)

    def add_vector(self, name: str, vector: str, dim: int, distance: str) -> None:
        """Add a named vector to an existing collection (embedded store, or server >= 1.18)."""
        self.client.create_vector_name(
            name, vector, models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=dim, distance=DISTANCES[distance])))

    def drop_vector(self, name: str, vector: str) -> None:
        self.client.delete_vector_name(name, vector)

    # --------------------------------------------------------------- aliases
    def aliases(self) -> dict[str, str]:
        """alias -> collection."""
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def aliases_of(self, collection: str) -> list[str]:
        return sorted(a for a, c in self.aliases().items() if c == collection)

    def resolve(self, name: str) -> str:
        """The collection ``name`` is, or that the alias ``name`` points at."""
        return self.aliases().get(name, name)

    def point_alias(self, alias: str, collection: str) -> None:
        """Make ``alias`` name ``collection``, atomically (one request deletes the old binding and creates the new)."""
        ops: list[Any] = []
        if alias in self.aliases():
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    # ----------------------------------------------------------------- reads
    def count(self, name: str, flt: models.Filter | None = None) -> int:
        return int(self.client.count(name, count_filter=flt, exact=True).count)

    def count_with_vector(self, name: str, vector: str) -> int:
        return self.count(name) if vector == "" else self.count(name, has_vector(vector))

    def scroll(self, name: str, *, limit: int, offset: Any = None, flt: models.Filter | None = None,
               with_vectors: bool | list[str] = False, with_payload: bool | list[str] = True) -> tuple[list[Any], Any]:
        recs, nxt = self.client.scroll(name, limit=limit, offset=offset, scroll_filter=flt, with_vectors=with_vectors,
                                       with_payload=with_payload)
        return list(recs), nxt

    def scroll_pages(self, name: str, *, batch: int = 512, flt: models.Filter | None = None,
                     with_vectors: bool | list[str] = False,
                     with_payload: bool | list[str] = True) -> Iterator[list[Any]]:
        """Every point, a page of at most ``batch`` at a time."""
        offset = None
        while True:
            recs, offset = self.scroll(name, limit=batch, offset=offset, flt=flt, with_vectors=with_vectors,
                                       with_payload=with_payload)
            if recs:
                yield recs
            if offset is None:
                break

    def scroll_all(self, name: str, *, batch: int = 512, flt: models.Filter | None = None,
                   with_vectors: bool | list[str] = False, with_payload: bool | list[str] = True) -> Iterator[Any]:
        for page in self.scroll_pages(name, batch=batch, flt=flt, with_vectors=with_vectors, with_payload=with_payload):
            yield from page

    def retrieve(self, name: str, ids: Sequence[Any], *, with_vectors: bool | list[str] = False,
                 with_payload: bool | list[str] = True) -> list[Any]:
        return list(self.client.retrieve(name, ids=list(ids), with_vectors=with_vectors, with_payload=with_payload))

    def search(self, name: str, vector: list[float], *, using: str, limit: int, flt: models.Filter | None = None,
               with_payload: bool | list[str] = True) -> list[models.ScoredPoint]:
        """Nearest points by one vector.

        Raises:
            CollectionNotFoundError: ``name`` is gone (an alias switched meanwhile, a dropped collection)."""
        with _missing_collection(name):
            res = self.client.query_points(name, query=vector, using=using or None, limit=limit, query_filter=flt,
                                           with_payload=with_payload)
        return list(res.points)

    def search_batch(self, name: str, vectors: Sequence[list[float]], *, using: str, limit: int,
                     with_payload: bool | list[str] = False) -> list[list[models.ScoredPoint]]:
        """:meth:`search` for several vectors in one request."""
        reqs = [models.QueryRequest(query=v, using=using or None, limit=limit, with_payload=with_payload) for v in vectors]
        with _missing_collection(name):
            return [list(r.points) for r in self.client.query_batch_points(name, requests=reqs)]

    # ---------------------------------------------------------------- writes
    def upsert(self, name: str, ids: Sequence[Any], vectors: Sequence[dict[str, list[float]]],
               payloads: Sequence[dict[str, Any]]) -> None:
        points = [models.PointStruct(id=i, vector=dict(v), payload=p)  # type: ignore[arg-type]
                  for i, v, p in zip(ids, vectors, payloads, strict=True)]
        self.client.upsert(name, points=points, wait=True)

    def write_vectors(self, name: str, vector: str, vectors: dict[Any, list[float]], *, mark_key: str = "",
                      marks: dict[str, list[Any]] | None = None, mark_field: str | None = None) -> None:
        """Write one named vector of several points, then set ``mark_field.mark_key = value`` on the ids of each
        ``marks`` value, in one request (the vectors first: a crash between the two only means redoing the batch)."""
        ops: list[Any] = []
        if vectors:
            ops.append(models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(
                points=[models.PointVectors(id=i, vector={vector: v}) for i, v in vectors.items()])))
        for value, ids in (marks or {}).items():
            if ids:
                ops.append(models.SetPayloadOperation(set_payload=models.SetPayload(
                    payload={mark_key: value}, points=list(ids), key=mark_field)))
        if ops:
            self.client.batch_update_points(name, update_operations=ops, wait=True)

    def delete_points(self, name: str, ids: Sequence[Any]) -> None:
        if ids:
            self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    # --------------------------------------------------------------- backups
    def backup_target(self, name: str, folder: str | Path | None = None) -> str | None:
        """Where :meth:`backup` of the embedded store will write, decided beforehand (so a journal can name it
        before it exists); None for a server, whose snapshot names itself."""
        if not self.capabilities().embedded:
            return None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        if folder is None:
            local = self.local_path
            folder = f"{local.rstrip('/')}.backups" if local and local != ":memory:" else "qdrant_compat_backups"
        return str(Path(folder) / f"{name}-{stamp}.jsonl")

    def backup(self, name: str, folder: str | Path | None = None, *, target: str | None = None) -> str:
        """Back up a collection before something is dropped; returns where it went.

        A server takes a snapshot (restore with Qdrant's own snapshot recovery). The embedded store has no
        snapshots: every point (all vectors, payload) is written to a JSON-lines file through the public scroll
        API, which :meth:`restore` reads back; the store stays open, nothing is copied underneath it. ``target``:
        the file :meth:`backup_target` chose (written again, whole, if a killed backup left it absent).
        """
        if not self.capabilities().embedded:
            snap = self.client.create_snapshot(name, wait=True)
            return f"snapshot {snap.name}" if snap else "snapshot"
        target = target or self.backup_target(name, folder)
        assert target is not None  # embedded: always a file
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        n = 0
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"format": BACKUP_FORMAT, "collection": name,
                                    "vectors": {v: [p.size, p.distance.value] for v, p in self.vector_params(name).items()},
                                    "metadata": self.metadata(name)}) + "\n")
                for rec in self.scroll_all(name, with_vectors=True, with_payload=True):
                    vec = rec.vector if isinstance(rec.vector, dict) else {"": rec.vector}
                    f.write(json.dumps({"id": rec.id, "vector": vec, "payload": rec.payload or {}}) + "\n")
                    n += 1
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # disk full, interrupted: no half backup is left to be mistaken for one
            raise
        os.replace(tmp, path)  # a backup is either complete or absent
        log.info("backed up %d points of %s to %s", n, name, path)
        return str(path)

    def restore(self, backup: str | Path, name: str | None = None) -> int:
        """Recreate a collection from a :meth:`backup` file (under ``name``, default its own); returns the points."""
        p = Path(backup)
        try:
            lines = p.open(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidArgumentError(f"backup file {p} does not exist") from None
        with lines:
            try:
                head = json.loads(next(lines))
            except (StopIteration, json.JSONDecodeError) as exc:
                raise CorruptArtifactError(f"{p} is not a qdrant-compat backup ({exc})") from None
            if head.get("format") != BACKUP_FORMAT:
                raise CorruptArtifactError(f"{p} is not a qdrant-compat backup (format {head.get('format')!r})")
            name = name or head["collection"]
            if self.exists(name):
                raise InvalidArgumentError(f"collection '{name}' exists; restore into a new name")
            vecs = {v: models.VectorParams(size=int(size), distance=models.Distance(dist))
                    for v, (size, dist) in head["vectors"].items()}
            unnamed = list(vecs) == [""]  # a collection with only the unnamed vector is restored as one
            self.client.create_collection(name, vectors_config=vecs[""] if unnamed else vecs,
                                          metadata=head.get("metadata") or None)
            n, batch = 0, []
            for line in lines:
                d = json.loads(line)
                vec = d["vector"][""] if unnamed else d["vector"]
                batch.append(models.PointStruct(id=d["id"], vector=vec, payload=d["payload"]))
                if len(batch) == 512:
                    self.client.upsert(name, points=batch, wait=True)
                    n, batch = n + len(batch), []
            if batch:
                self.client.upsert(name, points=batch, wait=True)
                n += len(batch)
        return n
