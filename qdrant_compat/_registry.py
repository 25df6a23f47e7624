"""One name -> factory registry pattern, shared by losses, backbones and converter heads.

Entries are registered with a decorator where they are defined, or *declared* by ``"module:attribute"``
so that the names (for ``click.Choice`` and error messages) are known without importing the module
(converter heads need torch; ``qdrant-compat --help`` must not load it). Unknown names and unknown
options raise :class:`~qdrant_compat.errors.InvalidArgumentError` listing what is allowed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from qdrant_compat.errors import InvalidArgumentError

T = TypeVar("T")


class NamedRegistry(Generic[T]):
    """``name -> factory``; :meth:`create` builds one, checking the keyword options against its signature."""

    def __init__(self, what: str, declared: dict[str, str] | None = None) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        self._declared = dict(declared or {})  # name -> "module:attribute", imported on first use

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._declared})

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._declared:
            module, _, _attr = self._declared[name].partition(":")
            importlib.import_module(module)  # registers itself with the decorator
        if name not in self._entries:
            raise InvalidArgumentError(f"unknown {self.what} {name!r}; choose one of {self.names()}")
        return self._entries[name]

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        """Build ``name`` with ``options``; an option the factory does not take is an error naming the allowed ones."""
        factory: Any = self.get(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(options) - set(params))
            if unknown:
                allowed = sorted(n for n, p in params.items() if n not in ("self", "dim_in", "dim_out")
                                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
                raise InvalidArgumentError(f"{self.what} {name!r} has no option(s) {unknown}; allowed: {allowed}")
        try:
            return factory(*args, **options)
        except TypeError as exc:
            raise InvalidArgumentError(f"{self.what} {name!r}: {exc}") from None


def lazy_attributes(package: str, where: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A PEP 562 ``__getattr__`` for ``package``: ``name`` is imported from ``where[name]`` on first use
    (and cached in ``namespace``), so importing the package itself stays light."""

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
