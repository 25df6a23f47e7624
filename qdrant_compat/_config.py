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


TIMESTAMP_KEYS = frozenset({"created", "updated", "started", "expires_at"})  # stored as epoch seconds


def iso_times(obj: Any) -> Any:
    """A JSON-ready document with its epoch-seconds timestamps (:data:`TIMESTAMP_KEYS`) as ISO-8601 UTC strings:
    what ``--json`` and results' ``to_dict()`` give users (metadata itself keeps the numbers)."""
    from datetime import datetime, timezone

    if isinstance(obj, dict):
        return {k: datetime.fromtimestamp(v, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                if k in TIMESTAMP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
                else iso_times(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [iso_times(v) for v in obj]
    return obj


def user_json(obj: Any) -> Any:
    """What ``--json`` and results' ``to_dict()`` give users: :func:`iso_times`, and a job's or plan's vector name
    (``source``, ``target``) left out where it equals its model (``source_model``, ``target_model``): it is given
    only where they differ (the unnamed vector ``""``, a blue-green collection's renamed vector)."""
    obj = iso_times(obj)

    def dedup(o: Any) -> Any:
        if isinstance(o, dict):
            o = {k: dedup(v) for k, v in o.items()}
            for side in ("source", "target"):
                if side in o and f"{side}_model" in o and o[side] == o[f"{side}_model"]:
                    del o[side]
            return o
        if isinstance(o, list):
            return [dedup(v) for v in o]
        return o

    return dedup(obj)


def _short_value(v: Any, width: int) -> str:
    if isinstance(v, Enum):
        return repr(v.value)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        r = short_repr(v, width)
        return r if len(r) <= 2 * width else f"{type(v).__name__}(…)"
    r = repr(v)
    if len(r) <= width:
        return r
    if isinstance(v, (list, tuple, set)):
        return f"<{len(v)} items>"
    if isinstance(v, dict):
        return f"<{len(v)} keys: {', '.join(map(str, list(v)[:3]))}{', …' if len(v) > 3 else ''}>"
    if isinstance(v, str):
        return repr(v[: width - 3] + "…")
    return r[: width - 1] + "…"


def short_repr(obj: Any, width: int = 60) -> str:
    """``Class(field=value, ...)`` for a dataclass, with only the fields that differ from their defaults and long
    values summarised (``classes=<150 items>``): a card or a report reads in one or two lines in a REPL."""
    parts = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name.startswith("_") or (f.default is not dataclasses.MISSING and _same(v, f.default)) or (
                f.default_factory is not dataclasses.MISSING and _same(v, f.default_factory())):
            continue
        parts.append(f"{f.name}={_short_value(v, width)}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays
        return False


class ShortRepr:
    """Mixin: the dataclass's repr is :func:`short_repr` (declare the dataclass with ``repr=False``)."""

    def __repr__(self) -> str:
        return short_repr(self)


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
