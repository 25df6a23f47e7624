"""Compute engines for ``upgrade run``: where images are decoded and embedded (and vectors converted).

* ``local`` (default): the pipeline inside :mod:`qdrant_compat.upgrade.fill`, threads on this machine.
* ``ray``: Ray Data pipelines on a local Ray or a cluster (:class:`~qdrant_compat.engines.ray_data.RayEngine`,
  the ``ray`` extra).

Both hand their results, in priority order, to the same writer, so the per-point state (vectors, marks,
write stamps) and the job in the collection's metadata are the same whichever engine ran.
"""

from __future__ import annotations

from typing import Any

from qdrant_compat.errors import InvalidArgumentError

ENGINES = ("local", "ray")


def make_engine(name: str, **options: Any) -> Any:
    """``None`` for the local engine, or the configured :class:`RayEngine`."""
    if name == "local":
        return None
    if name == "ray":
        from qdrant_compat.engines.ray_data import RayEngine

        return RayEngine(**{k: v for k, v in options.items() if v is not None})
    raise InvalidArgumentError(f"engine {name!r} unknown; allowed: {list(ENGINES)}")


__all__ = ["ENGINES", "make_engine"]
