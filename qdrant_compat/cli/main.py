"""The ``qdrant-compat`` command line.

Subcommands load lazily (click's documented ``LazyGroup`` pattern): ``--help`` and every serving command
import neither torch nor anything they do not use; ``train``/``export``/``converter fit`` need the ``train``
extra and say so when it is missing.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any

import click

from qdrant_compat.cli.context import CliState, setup_logging
from qdrant_compat.cli.errors import describe

# command name -> "module:attribute"; the modules import only click at load time
COMMANDS = {
    "train": "qdrant_compat.cli.training:train",
    "export": "qdrant_compat.cli.training:export",
    "model": "qdrant_compat.cli.models:model_group",
    "collection": "qdrant_compat.cli.collections:collection_group",
    "index": "qdrant_compat.cli.collections:index",
    "search": "qdrant_compat.cli.collections:search",
    "evaluate": "qdrant_compat.cli.evaluate:evaluate",
    "converter": "qdrant_compat.cli.converters:converter_group",
    "convert": "qdrant_compat.cli.converters:convert",
    "upgrade": "qdrant_compat.cli.upgrade:upgrade_group",
}


ANYWHERE = ("--json", "--no-progress", "--verbose")  # and -v, -vv, ...
VALUED = ("--path", "--url", "--api-key", "--registry")  # global options that take a value


def _anywhere(arg: str) -> bool:
    return arg in ANYWHERE or (len(arg) > 1 and arg[0] == "-" and set(arg[1:]) == {"v"})


class CompatGroup(click.Group):
    """Loads subcommands on demand; every failure ends as one line on stderr and an exit code
    (see :mod:`qdrant_compat.cli.errors`; ``-v`` adds the traceback)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``--json``, ``--no-progress`` and ``-v`` are accepted anywhere before ``--``: given after the subcommand
        (``collection info gallery --json``), they are moved in front of it."""
        stop = args.index("--") if "--" in args else len(args)
        first, i = None, 0
        while i < stop:  # the subcommand: the first token that is neither a global option nor its value
            a = args[i]
            if a in VALUED:
                i += 2
                continue
            if not a.startswith("-"):
                first = i
                break
            i += 1
        if first is not None:
            late = [a for a in args[first + 1 : stop] if _anywhere(a)]
            if late:
                rest = [a for a in args[first:stop] if not _anywhere(a)]
                args = [*args[:first], *late, *rest, *args[stop:]]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name].split(":")
            cmd = getattr(importlib.import_module(module), attr)
            return cmd if isinstance(cmd, click.Command) else None
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own: usage errors exit 2, --help/--version exit 0
        except (Exception, KeyboardInterrupt) as exc:
            state = ctx.find_object(CliState)
            message, code = describe(exc, state.where() if state is not None else "")
            if state is not None and state.verbose and not isinstance(exc, KeyboardInterrupt):
                click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            click.echo(f"error: {message}", err=True)
            if state is not None and state.json:  # a script reading stdout gets a document either way
                import json

                click.echo(json.dumps({"error": message, "exit_code": code}))
            ctx.exit(code)
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close()


@click.group(cls=CompatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--path", envvar="QDRANT_COMPAT_PATH", default=None,
              help="Embedded Qdrant store folder (env QDRANT_COMPAT_PATH; default ./qdrant_storage).")
@click.option("--url", envvar="QDRANT_URL", default=None, help="Qdrant server URL (env QDRANT_URL).")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key (env QDRANT_API_KEY).")
@click.option("--registry", "registry_root", envvar="QDRANT_COMPAT_REGISTRY", default=None,
              help="Model registry folder (env QDRANT_COMPAT_REGISTRY; default ./qdrant_compat_registry).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="qdrant-compat")
@click.pass_context
def cli(ctx: click.Context, path: str | None, url: str | None, api_key: str | None, registry_root: str | None,
        as_json: bool, no_progress: bool, verbose: int) -> None:
    """Upgrade the embedding model behind Qdrant collections without re-indexing.

    Every collection records which model version made its vectors; every write and query is checked.
    """
    setup_logging(verbose)
    ctx.obj = CliState(path=path, url=url, api_key=api_key, registry_root=registry_root, json=as_json,
                       show_progress=not no_progress, verbose=verbose)


def main() -> None:
    cli(prog_name="qdrant-compat")


if __name__ == "__main__":  # pragma: no cover
    main()
