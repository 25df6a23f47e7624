"""The Ray Data engine: the work of an upgrade run as Ray Data pipelines, beyond one machine.

Backfill: the driver scans the pending points (the same selection and priority order as the local engine)
and streams their image references, in chunks, into a pipeline of

1. ``_decode``: read, decode and preprocess a batch of images (CPU tasks; unreadable images come back as
   ``missing``/``failed`` rows with the reason, never as an exception that fails the run);
2. ``_Embed``: an actor pool, one ONNX Runtime session per actor (the CUDA provider where the worker has a
   GPU and onnxruntime-gpu), embedding the preprocessed tensors.

Convert: the same with ``_Convert`` actors applying the registered converter head to the stored vectors.

Who writes (``writes``):

* ``workers`` (the default against a Qdrant server): a third stage, ``_Write`` actors, each with its own
  QdrantClient opened from the store's :meth:`~qdrant_compat.store.Store.spec` (the URL and options from the
  driver; the API key from the worker's own ``QDRANT_API_KEY``, never passed). Before each batch a writer
  checks that the run still holds the job's lock and extends it (:func:`~qdrant_compat.upgrade.writes.hold_lease`);
  then it does what the local writer does (:func:`~qdrant_compat.upgrade.writes.write_extracted`: write stamps
  re-checked, vectors and marks in one request) and returns only each point's mark and error. The driver
  folds those into the job, which it saves when the pipeline ends (the counts are recounted from the points).
  An embedded store on disk can be written this way too, by one writer while the driver lets go of it.
* ``driver`` (the default for an embedded store): results come back to the driver in order, where the same
  writer as the local engine's checks stamps, writes, and heartbeats the lock per batch.

Either way a Ray run and a local run keep exactly the same per-point state, and each resumes the other.

Ray restarts an actor that dies (``max_restarts=-1``) and retries its batch; a run that fails anyway leaves
a resumable job (nothing is written for a batch that did not come back).

Every worker opens the registry at the same path (a shared filesystem on a cluster) and verifies the
model's sha256 before use: a worker never embeds with other bytes than the driver planned with.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.engines import reaper
from qdrant_compat.engines.base import FAILED, MISSING, OK, UNREACHABLE, decode
from qdrant_compat.errors import require_extra

log = logging.getLogger(__name__)
WRITES = ("auto", "workers", "driver")
ABORT = "abort"  # a writer's row: it stopped (its error in the row), nothing of the batch was written


@dataclass(frozen=True)
class WriteJob:
    """What a write actor needs: how to open the store (no secret in it), where to write, whose lock to keep."""

    spec: dict[str, Any]
    writers: int
    target: Any  # qdrant_compat.upgrade.writes.FillTarget
    owner: str
    ttl: float


@dataclass
class RayEngine:
    """Where and how wide the Ray pipelines run.

    Args:
        address: a Ray cluster (``ray://host:10001`` or ``auto``); None starts a local Ray on this machine.
        workers: embedding (or converting) actors.
        chunk: pending points handed to one pipeline at a time (bounds the driver's memory).
        num_cpus, object_store_mb: for a local Ray only.
        writes: ``workers`` (write actors write to Qdrant), ``driver`` (results return to the driver, which
            writes), or ``auto``: workers against a server, the driver for an embedded store.
        writers: write actors against a server (default: ``workers``); an embedded store has one writer.
    """

    address: str | None = None
    workers: int = 2
    chunk: int = 50_000
    num_cpus: int | None = None
    object_store_mb: int | None = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "ray"
    writes: str = "auto"
    writers: int | None = None
    _reaper: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from qdrant_compat.errors import InvalidArgumentError

        if self.writes not in WRITES:
            raise InvalidArgumentError(f"writes {self.writes!r} unknown; allowed: {list(WRITES)}")
        for name in ("workers", "writers", "chunk"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {value}")

    def worker_writes(self, store: Any, target: Any, owner: str, ttl: float) -> WriteJob | None:
        """How the workers write to ``store`` for the run ``owner`` holds, or None when the driver writes.

        Raises:
            InvalidArgumentError: ``writes="workers"`` with a store no other process can open (in memory)."""
        from qdrant_compat.errors import InvalidArgumentError

        server = store.local_path is None
        if self.writes == "driver" or (self.writes == "auto" and not server):
            return None
        try:
            spec = store.spec()
        except InvalidArgumentError as exc:
            if self.writes == "workers":
                raise
            log.warning("the driver writes: %s", exc)  # auto: a client workers cannot copy (custom auth)
            return None
        return WriteJob(spec=spec, writers=(self.writers or self.workers) if server else 1, target=target,
                        owner=owner, ttl=ttl)

    def connect(self) -> Any:
        require_extra("ray", "ray", feature="'upgrade run --engine ray'")
        import ray

        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                                  **self.init_kwargs}
            if self.address:
                kw["address"] = self.address
            else:
                if self.num_cpus is not None:
                    kw["num_cpus"] = self.num_cpus
                if self.object_store_mb is not None:
                    kw["object_store_memory"] = self.object_store_mb << 20
            before = set(reaper.descendants()) if not self.address else set()
            ray.init(**kw)
            if not self.address:  # a local Ray: its agents must not outlive a killed driver
                self._reaper = reaper.watch(before)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the priority order is the order points are written in
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator INFO lines drown the run's own
        return ray

    def _pool(self, ray: Any) -> dict[str, Any]:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0
        return {"compute": ray.data.ActorPoolStrategy(size=self.workers), "num_gpus": gpus, "num_cpus": 0 if gpus else 1}

    def extract(self, refs: Sequence[Any], *, registry_root: str, model: str, batch_size: int, reader: Any,
                write: WriteJob | None = None, keys: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Embed the images ``refs`` names, in order; yields numpy batches with ``i`` (position in ``refs``),
        ``status`` (ok / missing / failed), ``error`` and ``vec`` (zeros where not ok).

        With ``write``, the workers write the vectors themselves and the batches hold ``i``, ``mark``
        (extracted / missing / failed, or ``changed``: nothing written) and ``error``; ``keys`` gives, per
        ref, the JSON ``[point id, write stamp, image reference]`` the scan read."""
        from qdrant_compat.registry import Registry

        ray = self.connect()
        pool = self._pool(ray)
        spec = Registry(Path(registry_root)).get_model(model).card.input  # read (and verified) once, not per batch
        for start in range(0, len(refs), self.chunk):
            items = [{"i": start + k, "ref": str(r) if r is not None else ""}
                     for k, r in enumerate(refs[start : start + self.chunk])]
            yield from self._run(ray, items, keys, start, batch_size, [
                (_decode, {"fn_kwargs": {"spec": spec, "reader": reader}}),
                (_Embed, {"fn_constructor_kwargs": {"registry_root": registry_root, "model": model}, **pool}),
            ], _Write, write)

    def _run(self, ray: Any, items: list[dict[str, Any]], keys: Sequence[str] | None, start: int, batch_size: int,
             stages: list[tuple[Any, dict[str, Any]]], writer: Any, write: WriteJob | None) -> Iterator[dict[str, np.ndarray]]:
        """One chunk through ``stages`` and, with ``write``, the ``writer`` actors (each row given its scan key)."""
        if write is not None:
            assert keys is not None
            for k, item in enumerate(items):
                item["key"] = keys[start + k]
            stages = [*stages, (writer, {"fn_constructor_kwargs": {"job": write}, **self._writers(ray, write)})]
        ds = ray.data.from_items(items)
        for fn, kw in stages:
            ds = ds.map_batches(fn, batch_size=batch_size, batch_format="numpy", **kw)
        yield from _results(ds, batch_size)

    def _writers(self, ray: Any, write: WriteJob) -> dict[str, Any]:
        # writing is I/O: a quarter of a CPU each, so writers never starve the embedding actors of a slot
        return {"compute": ray.data.ActorPoolStrategy(size=write.writers), "num_cpus": 0.25}

    def convert(self, vectors: np.ndarray, *, registry_root: str, converter: str, batch_size: int,
                write: WriteJob | None = None, ids: list[Any] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Apply ``converter`` to ``vectors`` in order; yields batches with ``i`` and ``out``.

        With ``write`` (and the point ``ids``), the workers write the converted vectors; batches hold ``i``."""
        ray = self.connect()
        pool = self._pool(ray)
        keys = [json.dumps(i) for i in ids] if write is not None and ids is not None else None
        for start in range(0, len(vectors), self.chunk):
            items = [{"i": start + k, "src": v} for k, v in enumerate(vectors[start : start + self.chunk])]
            yield from self._run(ray, items, keys, start, batch_size, [
                (_Convert, {"fn_constructor_kwargs": {"registry_root": registry_root, "converter": converter}, **pool}),
            ], _WriteConverted, write)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized() and not self.address:
            ray.shutdown()
        watcher, self._reaper = self._reaper, None
        if watcher is not None:
            watcher.terminate()
            watcher.wait(timeout=10)


def _results(ds: Any, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The pipeline's batches, in order. A writer that had to stop (its run lost the lock, it cannot open the
    store) reports it in its rows rather than raising, since Ray keeps only the text of a worker's exception:
    raised here as the same qdrant-compat error, it ends as one clear line."""
    from qdrant_compat import errors

    batches = ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)
    try:
        for batch in batches:
            if "mark" in batch and len(batch["mark"]) and str(batch["mark"][0]) == ABORT:
                kind, _, message = str(batch["error"][0]).partition(": ")
                cls = getattr(errors, kind, None)
                raise (cls if isinstance(cls, type) and issubclass(cls, errors.QdrantCompatError)
                       else errors.UpgradeError)(message)
            yield batch
    finally:  # stop the pipeline now (its actors exit): an embedded store is free again for the driver
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _decode(batch: dict[str, np.ndarray], *, spec: Any, reader: Any) -> dict[str, np.ndarray]:
    """Read, decode, preprocess one batch (a Ray task) to the model's input ``spec`` (:func:`.base.decode`)."""
    dec = decode([str(r) for r in batch["ref"]], spec, reader)
    return {**_keys(batch), "i": batch["i"], "status": np.asarray(dec.status, dtype=str),
            "error": np.asarray(dec.error, dtype=str), "x": dec.x}


def _keys(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scan's per-point key column, passed through every stage to the writers (when they write)."""
    return {"key": batch["key"]} if "key" in batch else {}


class _Embed:
    """One ONNX Runtime session per actor; the model verified against its registered sha256 first."""

    def __init__(self, registry_root: str, model: str) -> None:
        from qdrant_compat.registry import Registry
        from qdrant_compat.runtime.embedder import Embedder

        self.emb = Embedder(Registry(Path(registry_root)).get_model(model), batch_size=256)  # verifies the bytes
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["status"] == OK
        vec = np.zeros((len(ok), self.emb.card.dim), np.float32)
        if ok.any():
            vec[ok] = self.emb.embed_tensor(np.ascontiguousarray(batch["x"][ok]))
        return {**_keys(batch), "i": batch["i"], "status": batch["status"], "error": batch["error"], "vec": vec}


class _Convert:
    def __init__(self, registry_root: str, converter: str) -> None:
        from qdrant_compat.registry import Registry
        from qdrant_compat.runtime.onnx import ConverterRuntime

        self.runtime, self.converter = ConverterRuntime(Registry(Path(registry_root))), converter

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runtime.apply(self.converter, np.asarray(batch["src"], np.float32))
        return {**_keys(batch), "i": batch["i"], "out": out}


class _Writer:
    """A write actor: its own client to the store (the spec holds no secret), the run's lock checked first.

    Ray may hand an actor several batches at once: they are written one at a time. A writer that must stop
    (it cannot open the store, the run lost its lock) lets go of the store and answers every batch with an
    ``abort`` row naming the error, which the driver raises."""

    def __init__(self, job: WriteJob) -> None:
        import threading

        from qdrant_compat.errors import QdrantCompatError
        from qdrant_compat.store import Store

        self.job = job
        self.pid = os.getpid()
        self.serial = threading.Lock()
        self.abort: BaseException | None = None
        self.store: Any = None
        try:
            self.store = Store.from_spec(job.spec)
        except QdrantCompatError as exc:
            self.abort = exc

    def write(self, fn: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from qdrant_compat.errors import QdrantCompatError, UpgradeError
        from qdrant_compat.upgrade.writes import hold_lease

        with self.serial:
            if self.abort is None:
                try:
                    hold_lease(self.store, self.job.target.collection, self.job.owner, self.job.ttl)
                    return fn(batch)  # type: ignore[no-any-return]
                except QdrantCompatError as exc:
                    self.abort = exc
                except Exception as exc:  # the store failed (network, server): the job stays resumable
                    self.abort = UpgradeError(f"a write worker (pid {self.pid}) failed: {type(exc).__name__}: {exc}; "
                                              "what it wrote is kept: run 'upgrade run' again to resume")
                self.store.close()  # this writer is done: let go of the store now (an embedded one has one owner)
            n = len(batch["i"])
            return {"i": batch["i"], "mark": np.full(n, ABORT).astype(str),
                    "error": np.full(n, f"{type(self.abort).__name__}: {self.abort}").astype(str)}


class _Write(_Writer):
    """Writes embedded batches: write stamps re-checked, vectors and marks in one request (as the local writer)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.write(self._write, batch)

    def _write(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from qdrant_compat.upgrade.writes import CHANGED, write_extracted

        keys = [json.loads(k) for k in batch["key"]]
        ids = [k[0] for k in keys]
        status = [str(x) for x in batch["status"]]
        ok = np.asarray([x == OK for x in status], bool)
        pick = {x: [pid for pid, st in zip(ids, status, strict=True) if st == x]
                for x in (OK, MISSING, FAILED, UNREACHABLE)}
        res = write_extracted(self.store, self.job.target, {k[0]: (k[1], k[2]) for k in keys}, pick[OK],
                              np.asarray(batch["vec"], np.float32)[ok], pick[MISSING], pick[FAILED], pick[UNREACHABLE])
        mark = {pid: m for m, pids in res.marks.items() for pid in pids} | {pid: CHANGED for pid in res.changed}
        error = [res.errors.get(pid, str(e)) for pid, e in zip(ids, batch["error"], strict=True)]
        return {"i": batch["i"], "mark": np.asarray([mark[pid] for pid in ids], dtype=object).astype(str),
                "error": np.asarray(error, dtype=object).astype(str)}


class _WriteConverted(_Writer):
    """Writes converted vectors (a point is converted once it holds the target vector)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.write(self._write, batch)

    def _write(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from qdrant_compat.upgrade.writes import write_vectors

        ids = [json.loads(k) for k in batch["key"]]
        out = np.asarray(batch["out"], np.float32)
        t = self.job.target
        write_vectors(self.store, t.collection, t.vector, {pid: v.tolist() for pid, v in zip(ids, out, strict=True)}, {})
        n = len(ids)
        return {"i": batch["i"], "mark": np.full(n, "converted").astype(str), "error": np.full(n, "").astype(str)}
