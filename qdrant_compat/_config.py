"""Typed configs built from dicts only at the boundary: unknown keys are an error, never ignored."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from qdrant_compat.errors import CorruptArtifactError

T = TypeVar("T")
_PRIMITIVES: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def from_dict(cls: type[T], data: Any, *, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Raises:
        CorruptArtifactError: ``data`` is not a dict, has unknown keys or misses required ones.
    """
    if not isinstance(data, dict):
        raise CorruptArtifactError(f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CorruptArtifactError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; allowed: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, where=f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CorruptArtifactError(f"{where}: {exc}") from None


def _convert(tp: Any, value: Any, *, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where=where)
    if tp in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[tp]) and not (tp is not bool and isinstance(value, bool))
        if not ok:
            raise CorruptArtifactError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return float(value) if tp is float else value
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise CorruptArtifactError(f"{where}: {value!r} is not one of {allowed}") from None
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _convert(args[0], value, where=where)
        return value
    if origin in (list, tuple, dict) and not isinstance(value, dict if origin is dict else (list, tuple)):
        want = "an object" if origin is dict else "a list"
        raise CorruptArtifactError(f"{where}: expected {want}, got {type(value).__name__}")
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        targs: tuple[Any, ...] = typing.get_args(tp) or (Any,)
        arg = targs[0]
        items = [_convert(arg, v, where=f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else list(items)
    if origin is dict and isinstance(value, dict):
        dargs: tuple[Any, ...] = typing.get_args(tp)
        vt = dargs[1] if len(dargs) == 2 else Any
        return {k: _convert(vt, v, where=f"{where}.{k}") for k, v in value.items()}
    return value


def read_json(path: str | Path, missing: str | None = None) -> Any:
    """Parse a JSON file; a missing or malformed file is a :class:`CorruptArtifactError` naming it.

    Args:
        missing: the message when the file does not exist (default: "<path>: file is missing").
    """
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise CorruptArtifactError(missing or f"{p}: file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(f"{p} is not valid JSON ({exc})") from None


def to_dict(obj: Any) -> Any:
    """Inverse of :func:`from_dict` (tuples become lists, so the result is JSON-ready)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
