"""The compute-engine contract of ``upgrade run``, and the one place an image reference becomes a model input
or a reason it could not.

An engine turns image references into embeddings (and source vectors into converted ones), in the order it
was given them, in batches of numpy columns:

* ``extract`` yields ``i`` (the position in ``refs``), ``status`` (one of :data:`STATUSES`), ``error`` (the
  reason, "" when ok) and ``vec`` (zeros where not ok);
* ``convert`` yields ``i`` and ``out``.

An engine whose workers can write to the store themselves says so with ``worker_writes`` (a description of the
writes, or None: the caller writes what comes back). Both the local engine (:mod:`.local`) and Ray Data
(:mod:`.ray_data`) read and preprocess every image with :func:`decode`, so a bad image gets the same status and
the same reason whichever engine met it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qdrant_compat.data.images import ImageMissingError, ImageUnreachableError, is_remote, redact
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

OK, MISSING, FAILED, UNREACHABLE = "ok", "missing", "failed", "unreachable"
STATUSES = (OK, MISSING, FAILED, UNREACHABLE)
Batch = dict[str, np.ndarray]


class Engine(Protocol):
    """Where images are decoded and embedded, and vectors converted, for ``upgrade run``."""

    chunk: int  # pending points handed over at a time (bounds the caller's memory)

    def extract(self, refs: Sequence[Any], *, registry_root: str, model: str, batch_size: int, reader: Any,
                write: Any = None, keys: Sequence[str] | None = None) -> Iterator[Batch]: ...

    def convert(self, vectors: np.ndarray, *, registry_root: str, converter: str, batch_size: int,
                write: Any = None, ids: list[Any] | None = None) -> Iterator[Batch]: ...

    def worker_writes(self, store: Any, target: Any, owner: str, ttl: float) -> Any | None: ...

    def shutdown(self) -> None: ...


@dataclass
class Decoded:
    """One batch of references, read and preprocessed: ``x`` holds zeros where ``status`` is not ok."""

    x: np.ndarray
    status: list[str]
    error: list[str]
    seconds: float = 0.0

    @property
    def ok(self) -> np.ndarray:
        return np.asarray([s == OK for s in self.status], bool)


def _one(reader: Any, spec: Any, ref: Any) -> tuple[str, str, np.ndarray | None]:
    from qdrant_compat.data.transforms import preprocess

    try:
        if ref is None or ref == "":
            raise ImageMissingError("no image reference")
        return OK, "", preprocess([reader.read(str(ref))], spec)[0]
    except ImageMissingError as exc:
        return MISSING, f"image '{redact(ref)}' not found ({exc})", None
    except ImageUnreachableError as exc:  # the server did not answer: a later run tries again
        return UNREACHABLE, str(exc), None
    except (CorruptArtifactError, InvalidArgumentError, OSError, ValueError) as exc:  # one bad image, not the batch
        return FAILED, str(exc), None


def decode(refs: Sequence[Any], spec: Any, reader: Any) -> Decoded:
    """Read, decode and preprocess ``refs`` to the model input ``spec``; one bad image never stops the batch.

    Remote references are fetched ``reader.concurrency`` at a time when the reader has that attribute (an
    :class:`~qdrant_compat.data.images.ImageRefs`)."""
    t0 = time.perf_counter()
    workers = int(getattr(reader, "concurrency", 1) or 1)
    if workers > 1 and len(refs) > 1 and any(is_remote(r) for r in refs):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(refs))) as pool:
            results = list(pool.map(lambda r: _one(reader, spec, r), refs))
    else:
        results = [_one(reader, spec, r) for r in refs]
    x = np.zeros((len(refs), spec.channels, spec.size, spec.size), np.float32)
    for k, (_, _, row) in enumerate(results):
        if row is not None:
            x[k] = row
    return Decoded(x, [s for s, _, _ in results], [e for _, e, _ in results], time.perf_counter() - t0)


def finite_rows(vecs: np.ndarray) -> np.ndarray:
    """Rows that are a usable embedding: finite and not all zero (a model that overflowed, or a dead input)."""
    return np.isfinite(vecs).all(axis=1) & np.any(vecs != 0, axis=1) if len(vecs) else np.zeros(0, bool)


__all__ = ["Engine", "Decoded", "decode", "finite_rows", "OK", "MISSING", "FAILED", "UNREACHABLE", "STATUSES"]
