"""Transformation heads: old->new rewrites of stored vectors and new->old query adapters.

Kinds: ``linear`` (ridge), ``procrustes`` (orthogonal), ``lowrank`` (reduced-rank ridge), ``mlp``
(residual MLP). Build with :func:`create_converter`, reload with :func:`load_converter`.

Fitting a head needs the ``train`` extra (torch); applying a registered one does not (the serving side
runs its ONNX file, see :class:`qdrant_compat.runtime.ConverterRuntime`). The names load lazily, so
``converters.kinds`` (the list of kinds) is importable without torch.
"""

from __future__ import annotations

from converters.kinds import list_converters
from qdrant_compat._registry import lazy_attributes

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


__getattr__ = lazy_attributes("converters", _LAZY, globals())


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
