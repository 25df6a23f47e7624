"""Compute engines for ``upgrade run``: where images are decoded and embedded (and vectors converted).

* ``local`` (default): threads on this machine (:class:`~qdrant_compat.engines.local.LocalEngine`).
* ``ray``: Ray Data pipelines on a local Ray or a cluster (:class:`~qdrant_compat.engines.ray_data.RayEngine`,
  the ``ray`` extra).

Both keep the contract of :class:`~qdrant_compat.engines.base.Engine` and read images with the same
:func:`~qdrant_compat.engines.base.decode`; they hand their results, in priority order, to the same writer, so
the per-point state (vectors, marks, write stamps) and the job in the collection's metadata are the same
whichever engine ran.
"""

from __future__ import annotations

from typing import Any

from qdrant_compat.engines.base import Engine
from qdrant_compat.errors import InvalidArgumentError

ENGINES = ("local", "ray")


def make_engine(name: str, *, read_workers: int = 2, **options: Any) -> Engine:
    """The configured engine: a :class:`LocalEngine` with ``read_workers`` threads, or a :class:`RayEngine`
    (``options``: its settings; None values keep its defaults)."""
    if name == "local":
        from qdrant_compat.engines.local import LocalEngine

        return LocalEngine(read_workers)
    if name == "ray":
        from qdrant_compat.engines.ray_data import RayEngine

        return RayEngine(**{k: v for k, v in options.items() if v is not None})
    raise InvalidArgumentError(f"engine {name!r} unknown; allowed: {list(ENGINES)}")


__all__ = ["ENGINES", "Engine", "make_engine"]
