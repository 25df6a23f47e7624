"""The Ray Data engine: the work of an upgrade run as Ray Data pipelines, beyond one machine.

Backfill: the driver scans the pending points (the same selection and priority order as the local engine)
and streams their image references, in chunks, into a pipeline of

1. ``_decode``: read, decode and preprocess a batch of images (CPU tasks; unreadable images come back as
   ``missing``/``failed`` rows with the reason, never as an exception that fails the run);
2. ``_Embed``: an actor pool, one ONNX Runtime session per actor (the CUDA provider where the worker has a
   GPU and onnxruntime-gpu), embedding the preprocessed tensors.

Convert: the same with ``_Convert`` actors applying the registered converter head to the stored vectors.

Results come back to the driver in order, where the engine-independent writer of
:mod:`qdrant_compat.upgrade.runner` checks write stamps, writes vectors and marks, updates the job and
heartbeats its lock. So a Ray run and a local run keep exactly the same per-point state, and each resumes
the other. Writing from the driver is what the embedded store allows (one process owns it); against a
server the driver's batched writes are what the measured per-batch cost supports (see
``benchmarks/s8_ray_scaling.py``), and writing from the workers is left to a later version.

Ray restarts an actor that dies (``max_restarts=-1``) and retries its batch; a run that fails anyway leaves
a resumable job (nothing is written for a batch that did not come back).

Every worker opens the registry at the same path (a shared filesystem on a cluster) and verifies the
model's sha256 before use: a worker never embeds with other bytes than the driver planned with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.errors import require_extra

log = logging.getLogger(__name__)
OK, MISSING, FAILED = "ok", "missing", "failed"


@dataclass
class RayEngine:
    """Where and how wide the Ray pipelines run.

    Args:
        address: a Ray cluster (``ray://host:10001`` or ``auto``); None starts a local Ray on this machine.
        workers: embedding (or converting) actors.
        chunk: pending points handed to one pipeline at a time (bounds the driver's memory).
        num_cpus, object_store_mb: for a local Ray only.
    """

    address: str | None = None
    workers: int = 2
    chunk: int = 50_000
    num_cpus: int | None = None
    object_store_mb: int | None = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "ray"

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
            ray.init(**kw)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the priority order is the order points are written in
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator INFO lines drown the run's own
        return ray

    def _pool(self, ray: Any) -> dict[str, Any]:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0
        return {"compute": ray.data.ActorPoolStrategy(size=self.workers), "num_gpus": gpus, "num_cpus": 0 if gpus else 1}

    def extract(self, refs: list[Any], *, registry_root: str, model: str, batch_size: int,
                reader: Any) -> Iterator[dict[str, np.ndarray]]:
        """Embed the images ``refs`` names, in order; yields numpy batches with ``i`` (position in ``refs``),
        ``status`` (ok / missing / failed), ``error`` and ``vec`` (zeros where not ok)."""
        from qdrant_compat.registry import Registry

        ray = self.connect()
        pool = self._pool(ray)
        spec = Registry(Path(registry_root)).get_model(model).card.input  # read (and verified) once, not per batch
        for start in range(0, len(refs), self.chunk):
            items = [{"i": start + k, "ref": str(r) if r is not None else ""}
                     for k, r in enumerate(refs[start : start + self.chunk])]
            ds = ray.data.from_items(items)
            ds = ds.map_batches(_decode, batch_size=batch_size, batch_format="numpy",
                                fn_kwargs={"spec": spec, "reader": reader})
            ds = ds.map_batches(_Embed, batch_size=batch_size, batch_format="numpy",
                                fn_constructor_kwargs={"registry_root": registry_root, "model": model}, **pool)
            yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)

    def convert(self, vectors: np.ndarray, *, registry_root: str, converter: str,
                batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Apply ``converter`` to ``vectors`` in order; yields batches with ``i`` and ``out``."""
        ray = self.connect()
        pool = self._pool(ray)
        for start in range(0, len(vectors), self.chunk):
            part = vectors[start : start + self.chunk]
            ds = ray.data.from_items([{"i": start + k, "src": v} for k, v in enumerate(part)])
            ds = ds.map_batches(_Convert, batch_size=batch_size, batch_format="numpy",
                                fn_constructor_kwargs={"registry_root": registry_root, "converter": converter}, **pool)
            yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized() and not self.address:
            ray.shutdown()


def _decode(batch: dict[str, np.ndarray], *, spec: Any, reader: Any) -> dict[str, np.ndarray]:
    """Read, decode, preprocess one batch (a Ray task) to the model's input ``spec``."""
    from qdrant_compat.data.images import ImageMissingError
    from qdrant_compat.data.transforms import preprocess
    from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

    n = len(batch["i"])
    x = np.zeros((n, spec.channels, spec.size, spec.size), np.float32)
    status, error = np.full(n, OK, dtype=object), np.full(n, "", dtype=object)
    for k, ref in enumerate(batch["ref"]):
        try:
            if not ref:
                raise ImageMissingError("no image reference")
            x[k] = preprocess([reader.read(str(ref))], spec)[0]
        except ImageMissingError as exc:
            status[k], error[k] = MISSING, f"image {str(ref)!r} not found ({exc})"
        except (CorruptArtifactError, InvalidArgumentError, OSError, ValueError) as exc:
            status[k], error[k] = FAILED, str(exc)
    return {"i": batch["i"], "status": status.astype(str), "error": error.astype(str), "x": x}


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
        return {"i": batch["i"], "status": batch["status"], "error": batch["error"], "vec": vec}


class _Convert:
    def __init__(self, registry_root: str, converter: str) -> None:
        from qdrant_compat.registry import Registry
        from qdrant_compat.runtime.onnx import ConverterRuntime

        self.runtime, self.converter = ConverterRuntime(Registry(Path(registry_root))), converter

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"i": batch["i"], "out": self.runtime.apply(self.converter, np.asarray(batch["src"], np.float32))}
