"""Transformation heads: old->new rewrites of stored vectors and new->old query adapters.

Kinds: ``linear`` (ridge), ``procrustes`` (orthogonal), ``lowrank`` (reduced-rank ridge), ``mlp``
(residual MLP). Build with :func:`create_converter`, reload with :func:`load_converter`.
"""

from converters.base import Converter, FitReport, create_converter, list_converters, load_converter, register_converter
from converters.linear import LinearConverter
from converters.lowrank import LowRankConverter
from converters.mlp import MLPConverter
from converters.procrustes import ProcrustesConverter

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
