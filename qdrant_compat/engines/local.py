"""The local engine: threads on this machine (the default of ``upgrade run`` and of ``index``).

``read_workers`` threads read, decode and preprocess the next batches (at most ``read_workers + 1`` ahead:
bounded memory) while one thread embeds with ONNX Runtime; the caller takes the embedded batches in order and
writes them, so its writes overlap the next batches' reading and embedding. ``read_workers=0`` runs every
step in the caller's thread, one after another. Workers never write: the caller does (``worker_writes`` is
None), so every store call of a run happens in one thread, in batch order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.engines.base import Batch, Decoded, decode
from qdrant_compat.errors import InvalidArgumentError

_END = object()


@dataclass
class LocalEngine:
    """Reading in a bounded thread pool, embedding in one thread, results in order (see the module)."""

    read_workers: int = 2
    chunk: int = 1  # the caller's batches are handed over one at a time: nothing to bound
    _runtimes: dict[str, Any] = field(default_factory=dict, repr=False)  # registry root -> ConverterRuntime

    def __post_init__(self) -> None:
        if self.read_workers < 0:
            raise InvalidArgumentError(f"read_workers must be >= 0, got {self.read_workers}")

    def worker_writes(self, store: Any, target: Any, owner: str, ttl: float) -> None:
        return None  # the caller writes

    def shutdown(self) -> None:
        return None

    def extract(self, refs: Sequence[Any], *, registry_root: str, model: str, batch_size: int, reader: Any,
                write: Any = None, keys: Sequence[str] | None = None) -> Iterator[Batch]:
        """Embed the images ``refs`` names, in order (the contract of :class:`~qdrant_compat.engines.base.Engine`);
        each batch also carries ``read_s`` and ``embed_s``, the seconds its two stages took."""
        if write is not None:
            raise InvalidArgumentError("the local engine's workers do not write: the caller writes what it yields")
        from qdrant_compat.registry import Registry
        from qdrant_compat.runtime.embedder import Embedder

        embedder = Embedder(Registry(Path(registry_root)).get_model(model), batch_size=batch_size)
        spec, dim = embedder.card.input, embedder.card.dim
        spans = [(s, min(s + batch_size, len(refs))) for s in range(0, len(refs), batch_size)]

        def read(span: tuple[int, int]) -> Decoded:
            return decode(refs[span[0] : span[1]], spec, reader)

        def embed(span: tuple[int, int], dec: Decoded) -> Batch:
            t0 = time.perf_counter()
            ok = dec.ok
            vec = np.zeros((len(ok), dim), np.float32)
            if ok.any():
                vec[ok] = embedder.embed_tensor(np.ascontiguousarray(dec.x[ok]))
            return {"i": np.arange(*span), "status": np.asarray(dec.status, dtype=str),
                    "error": np.asarray(dec.error, dtype=str), "vec": vec,
                    "read_s": np.asarray(dec.seconds), "embed_s": np.asarray(time.perf_counter() - t0)}

        if self.read_workers == 0:
            for span in spans:
                yield embed(span, read(span))
            return
        yield from _pipelined(spans, read, embed, self.read_workers)

    def convert(self, vectors: np.ndarray, *, registry_root: str, converter: str, batch_size: int,
                write: Any = None, ids: list[Any] | None = None) -> Iterator[Batch]:
        """Apply ``converter`` to ``vectors`` in order, ``batch_size`` rows a batch (``i``, ``out``). The runtime (and
        its verified ONNX sessions) is opened once per registry and kept: the caller hands over one batch a call."""
        if write is not None:
            raise InvalidArgumentError("the local engine's workers do not write: the caller writes what it yields")
        runtime = self._runtimes.get(registry_root)
        if runtime is None:
            from qdrant_compat.registry import Registry
            from qdrant_compat.runtime.onnx import ConverterRuntime

            runtime = self._runtimes[registry_root] = ConverterRuntime(Registry(Path(registry_root)))
        for s in range(0, len(vectors), batch_size):
            part = np.asarray(vectors[s : s + batch_size], np.float32)
            yield {"i": np.arange(s, s + len(part)), "out": runtime.apply(converter, part)}


def _pipelined(spans: list[tuple[int, int]], read: Callable[[tuple[int, int]], Decoded],
               embed: Callable[[tuple[int, int], Decoded], Batch], workers: int) -> Iterator[Batch]:
    """``embed(read(span))`` for every span, in order: reads in a pool, embedding in one thread, two embedded
    batches waiting at most. Closing the generator (the caller stopped) stops both; an error in either is raised
    here, in the caller's thread, and nothing after it is embedded."""
    done: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                done.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def embedder() -> None:
        ahead = workers + 1  # batches being read at most: bounded memory
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qdrant-compat-read") as pool:
                futures: list[Future[Decoded]] = [pool.submit(read, s) for s in spans[:ahead]]
                try:
                    for k, span in enumerate(spans):
                        dec = futures[k].result()
                        if k + ahead < len(spans):
                            futures.append(pool.submit(read, spans[k + ahead]))
                        if stop.is_set() or not put(embed(span, dec)):
                            return
                finally:
                    for f in futures:
                        f.cancel()
        except BaseException as exc:  # raised in the caller's thread
            put(exc)
            return
        put(_END)

    t = threading.Thread(target=embedder, name="qdrant-compat-embed", daemon=True)
    t.start()
    try:
        while True:
            item = done.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


__all__ = ["LocalEngine"]
