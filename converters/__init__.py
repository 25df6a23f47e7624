"""Transformation heads: old->new rewrites of stored vectors and new->old query adapters.

Kinds: ``linear`` (ridge), ``procrustes`` (orthogonal), ``lowrank`` (reduced-rank ridge), ``mlp``
(residual MLP). Build with :func:`create_converter`, reload with :func:`load_converter`.

Fitting a head needs the ``train`` extra (torch); applying a registered one does not (the serving side
runs its ONNX file, see :class:`qdrant_compat.runtime.ConverterRuntime`). The names load lazily, so
``converters.kinds`` (the list of kinds) is importable without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from converters.kinds import list_converters

_LAZY = {
    "Converter": "converters.base",
    "FitReport": "converters.base",
    "create_converter": "converters.base",
    "load_converter": "converters.base",
    "register_converter": "converters.base",
    "LinearConverter": "converters.linear",
    "LowRankConverter": "converters.lowrank",
    "MLPConverter": "converters.mlp",
    "ProcrustesConverter": "converters.procrustes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'converters' has no attribute {name!r}")


__all__ = [
    "Converter",
    "FitReport",
    "LinearConverter",
    "LowRankConverter",
    "MLPConverter",
    "ProcrustesConverter",
    "create_converter",
    "list_converters",
    "load_converter",
    "register_converter",
]
