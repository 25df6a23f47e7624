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
    _client: CompatClient | None = None

    @property
    def registry(self) -> Registry:
        from qdrant_compat.registry import Registry

        return Registry(self.registry_root)

    @property
    def client(self) -> CompatClient:
        if self._client is None:
            from qdrant_compat.client import CompatClient

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
            click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
        else:
            click.echo(human() if callable(human) else human)

    @contextlib.contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[int, int], None]]:
        """A progress callback ``(done, total)``; a bar only on a TTY and without --no-progress/--json."""
        show = self.progress_enabled()
        if not show:
            yield lambda done, tot: None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True) as bar:
            last = [0]

            def update(done: int, tot: int) -> None:
                bar.update(max(0, done - last[0]))
                last[0] = done

            yield update

    def progress_enabled(self) -> bool:
        return bool(self.show_progress and not self.json and sys.stderr.isatty())


pass_state = click.make_pass_decorator(CliState)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
