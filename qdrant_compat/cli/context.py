"""Shared CLI state and output helpers: commands parse options and call the library, nothing more."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported on first use: `--help` must not load qdrant-client
    from qdrant_compat.client import CompatClient
    from qdrant_compat.registry import Registry


@dataclass
class CliState:
    path: str | None
    url: str | None
    api_key: str | None
    registry_root: str | None
    json: bool
    show_progress: bool
    verbose: int = 0
    may_create_store: bool = False  # only commands that create collections may start a new embedded store
    _client: CompatClient | None = None

    def where(self) -> str:
        """Where the data lives, for messages (never the API key)."""
        from qdrant_compat.store import DEFAULT_PATH

        return self.url or str(self.path or DEFAULT_PATH)

    @property
    def registry(self) -> Registry:
        from qdrant_compat.registry import Registry

        return Registry(self.registry_root)

    @property
    def client(self) -> CompatClient:
        if self._client is None:
            from pathlib import Path

            from qdrant_compat.client import CompatClient
            from qdrant_compat.errors import InvalidArgumentError
            from qdrant_compat.store import DEFAULT_PATH

            store = Path(self.path or DEFAULT_PATH)
            if not self.url and not self.may_create_store and not store.exists():
                raise InvalidArgumentError(
                    f"no embedded Qdrant store at {store}: check --path (or QDRANT_COMPAT_PATH); 'collection create' "
                    "and 'index' start a new one, other commands never create one silently"
                )

            self._client = CompatClient(path=self.path, url=self.url, api_key=self.api_key, registry=self.registry)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def emit(self, obj: Any, human: str | Callable[[], str]) -> None:
        """``--json``: one JSON document on stdout (a typed result's ``to_dict()``); otherwise the human text."""
        if self.json:
            if hasattr(obj, "to_dict"):
                obj = obj.to_dict()
            elif isinstance(obj, list):
                obj = [o.to_dict() if hasattr(o, "to_dict") else o for o in obj]
            from qdrant_compat._config import user_json

            click.echo(json.dumps(user_json(obj), indent=2, sort_keys=True, default=str))
        else:
            click.echo(human() if callable(human) else human)

    @contextlib.contextmanager
    def progress(self, label: str, total: int, unit: str = "points",
                 every_s: float = 10.0) -> Iterator[Callable[[int, int], None]]:
        """A progress callback ``(done, total)``. On a TTY a bar (``label``, counts, rate, ETA), drawn at the first
        report, so a step that reports nothing (an adopt) leaves no bar behind; elsewhere a line on stderr every
        ``every_s`` seconds and one at the end. Nothing with ``--no-progress`` or ``--json``."""
        import time

        if not self.show_progress or self.json:
            yield lambda done, tot: None
            return
        t0 = time.monotonic()
        state: dict[str, Any] = {"bar": None, "done": 0, "line": t0, "total": total}

        def text(done: int, tot: int) -> str:
            rate = done / max(time.monotonic() - t0, 1e-9)
            pct = f" ({100 * done / tot:.0f}%)" if tot else ""
            return f"{label}: {done:,}/{tot:,} {unit}{pct}, {rate:,.0f} {unit}/s"

        def update(done: int, tot: int) -> None:
            state["total"] = tot or state["total"]
            if sys.stderr.isatty():
                if state["bar"] is None:
                    state["bar"] = click.progressbar(length=max(int(state["total"]), 1), label=label, file=sys.stderr,
                                                     show_eta=True, show_pos=True).__enter__()
                state["bar"].update(max(0, done - int(state["done"])))
            elif time.monotonic() - float(state["line"]) >= every_s:
                state["line"] = time.monotonic()
                click.echo(text(done, int(state["total"])), err=True)
            state["done"] = done

        try:
            yield update
        finally:
            if state["bar"] is not None:
                state["bar"].__exit__(None, None, None)
            elif state["done"] and not sys.stderr.isatty():
                click.echo(text(int(state["done"]), int(state["total"])), err=True)

    def progress_enabled(self) -> bool:
        return bool(self.show_progress and not self.json and sys.stderr.isatty())


pass_state = click.make_pass_decorator(CliState)


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which every comparison lets through): usage, exit 2."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        out = super().convert(value, param, ctx)
        if out is not None and not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return out


def cache_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--cache-dir``/``--cache-size``/``--no-cache``: the on-disk vector cache (old-model targets, frozen-backbone
    features), passed to the command as ``cache`` (a VectorCache, or None with --no-cache)."""

    f = click.option("--no-cache", is_flag=True, help="Compute every embedding afresh; read and write no cache.")(f)
    f = click.option("--cache-size", type=FiniteRange(min=0), default=10.0, show_default=True,
                     help="Cache size cap in GiB (least recently used models dropped first).")(f)
    f = click.option("--cache-dir", type=click.Path(file_okay=False), default=None, envvar="QDRANT_COMPAT_VECTOR_CACHE",
                     help="Vector cache folder (env QDRANT_COMPAT_VECTOR_CACHE; default ~/.cache/qdrant-compat/vectors).")(f)
    return f


def make_cache(cache_dir: str | None, cache_size: float, no_cache: bool) -> Any:
    if no_cache:
        return None
    from qdrant_compat.runtime.cache import VectorCache

    return VectorCache(cache_dir, max_bytes=int(cache_size * (1 << 30)))


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # libraries' warnings (qdrant-client, onnxruntime, torch) go through logging: shown with -v only, so a failure
    # stays one line on stderr
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)
