"""The converter kinds, known without importing torch (the CLI offers them as choices).

Each kind is declared here by where it lives; the module registers its class on import.
"""

from __future__ import annotations

from typing import Any

from qdrant_compat._registry import NamedRegistry

REGISTRY: NamedRegistry[Any] = NamedRegistry("converter kind", declared={
    "linear": "converters.linear:LinearConverter",
    "procrustes": "converters.procrustes:ProcrustesConverter",
    "lowrank": "converters.lowrank:LowRankConverter",
    "mlp": "converters.mlp:MLPConverter",
})


def list_converters() -> list[str]:
    return REGISTRY.names()
