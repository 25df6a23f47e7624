"""An on-disk cache of per-image vectors (old-model targets, frozen-backbone features), keyed by content.

A BCT run on 50,000 images spent 27 minutes embedding every image with the old model and again with the
frozen backbone, against 105 s of training, and the next run paid it again. Here each vector is stored under
``sha256(model key, image bytes)``: the model key says which model and preprocessing made it (a card's
fingerprint and input spec, or a backbone's weight hash), the image key what it was made of (a file's bytes,
an array's bytes, a remote image's URL; :func:`~qdrant_compat.data.images.raw_key`). Another subset, order or
split of the same images hits the same entries; a changed file or model misses.

Layout: ``ROOT/<model key>/<shard>.keys.npy`` (sorted 32-byte digests) + ``<shard>.vecs.npy`` (float32 rows),
written to a temporary name and renamed, so a killed run leaves whole shards or none. Shards are read
memory-mapped. The cache keeps under ``max_bytes``: the least recently used model keys are dropped first.
Numpy only: ``evaluate`` and ``converter fit`` use it without torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.errors import InvalidArgumentError

log = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 10 << 30


def default_cache_dir() -> Path:
    """``$QDRANT_COMPAT_VECTOR_CACHE``, else ``$XDG_CACHE_HOME/qdrant-compat/vectors`` (``~/.cache/...``)."""
    env = os.environ.get("QDRANT_COMPAT_VECTOR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qdrant-compat" / "vectors"


def model_key(*parts: Any) -> str:
    """A short stable key for whatever made the vectors (fingerprint, input spec, layer, ...)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


class VectorCache:
    """``get(model_key, images, compute)``: cached rows for each image, computing only the missing ones.

    Args:
        root: the cache folder (default :func:`default_cache_dir`).
        max_bytes: the size cap (default 10 GiB); 0 disables writing (reads still hit).
    """

    def __init__(self, root: str | Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise InvalidArgumentError(f"cache size must be >= 0 bytes, got {max_bytes}")
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self.hits = self.misses = 0

    @staticmethod
    def digests(keys: Sequence[bytes]) -> np.ndarray:
        """``(n, 32)`` uint8: sha256 of each image key."""
        out = np.empty((len(keys), 32), dtype=np.uint8)
        for i, k in enumerate(keys):
            out[i] = np.frombuffer(hashlib.sha256(k).digest(), dtype=np.uint8)
        return out

    def _shards(self, mkey: str) -> list[tuple[np.ndarray, np.ndarray]]:
        d = self.root / mkey
        out = []
        for kf in sorted(d.glob("*.keys.npy")) if d.is_dir() else []:
            vf = kf.with_name(kf.name.replace(".keys.npy", ".vecs.npy"))
            try:
                keys = np.load(kf, mmap_mode="r")
                vecs = np.load(vf, mmap_mode="r")
            except (OSError, ValueError):
                log.warning("cache shard %s is unreadable; ignored", kf)
                continue
            if keys.ndim == 2 and keys.shape[1] == 32 and len(keys) == len(vecs):
                out.append((keys, vecs))
        return out

    def get(self, mkey: str, image_keys: Sequence[bytes], compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Rows for every image: cached ones read, the rest ``compute(missing positions)`` and stored.

        ``compute`` receives the positions (into ``image_keys``) still missing and returns their rows.
        """
        dig = self.digests(image_keys)
        n = len(dig)
        rows: np.ndarray | None = None
        found = np.zeros(n, dtype=bool)
        void = dig.view(np.dtype((np.void, 32))).ravel()
        for keys, vecs in self._shards(mkey):
            kv = np.asarray(keys).view(np.dtype((np.void, 32))).ravel()
            pos = np.searchsorted(kv, void)
            pos = np.minimum(pos, len(kv) - 1)
            hit = (kv[pos] == void) & ~found
            if hit.any():
                if rows is None:
                    rows = np.empty((n, vecs.shape[1]), dtype=np.float32)
                rows[hit] = vecs[pos[hit]]
                found |= hit
        missing = np.flatnonzero(~found)
        self.hits += n - len(missing)
        self.misses += len(missing)
        if len(missing):
            new = np.asarray(compute(missing), dtype=np.float32)
            if rows is None:
                rows = np.empty((n, new.shape[1]), dtype=np.float32)
            rows[missing] = new
            finite = np.isfinite(new).all(axis=1)  # an unreadable image's NaN row is never cached
            self._write(mkey, dig[missing][finite], new[finite])
        else:
            self._touch(mkey)
        assert rows is not None
        log.info("vector cache %s: %d hit(s), %d computed", mkey[:12], n - len(missing), len(missing))
        return rows

    def _touch(self, mkey: str) -> None:
        d = self.root / mkey
        if d.is_dir():
            os.utime(d)

    def _write(self, mkey: str, dig: np.ndarray, vecs: np.ndarray) -> None:
        if self.max_bytes == 0 or len(dig) == 0:
            return
        d = self.root / mkey
        try:
            d.mkdir(parents=True, exist_ok=True)
            _, first = np.unique(dig.view(np.dtype((np.void, 32))).ravel(), return_index=True)  # sorted, unique
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
            for suffix, arr in ((".vecs.npy", vecs[first]), (".keys.npy", dig[first])):  # keys last: they mark a whole shard
                tmp = d / f".{name}{suffix}.tmp"
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(arr))
                os.replace(tmp, d / f"{name}{suffix}")
            os.utime(d)
        except OSError as exc:  # a full or read-only cache disk must not fail the run
            log.warning("vector cache not written (%s)", exc)
            return
        self._evict(keep=mkey)

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*.npy")) if self.root.is_dir() else 0

    def _evict(self, keep: str) -> None:
        total = self.size()
        if total <= self.max_bytes:
            return
        dirs = sorted((p for p in self.root.iterdir() if p.is_dir() and p.name != keep), key=lambda p: p.stat().st_mtime)
        for d in dirs:
            if total <= self.max_bytes:
                break
            total -= sum(f.stat().st_size for f in d.glob("*.npy"))
            shutil.rmtree(d, ignore_errors=True)
            log.info("vector cache over %d bytes: dropped %s", self.max_bytes, d.name)


def cached_rows(cache: VectorCache | None, mkey: str, source: Any, indices: Sequence[int],
                compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """Rows for ``indices`` of an image source, through ``cache`` when given (``compute(indices)`` otherwise)."""
    idx = [int(i) for i in indices]
    if cache is None:
        return compute(idx)
    from qdrant_compat.data.images import raw_key

    keys = [raw_key(source, i) for i in idx]
    return cache.get(mkey, keys, lambda miss: compute([idx[int(m)] for m in miss]))
