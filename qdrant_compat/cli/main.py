"""The ``qdrant-compat`` command line."""

from __future__ import annotations

import click

from qdrant_compat.cli.context import CliState, setup_logging
from qdrant_compat.errors import QdrantCompatError


class CompatGroup(click.Group):
    """Turns library errors into one clean line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except QdrantCompatError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close()


@click.group(cls=CompatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--path", envvar="QDRANT_COMPAT_PATH", default=None,
              help="Embedded Qdrant store folder (default ./qdrant_storage).")
@click.option("--url", envvar="QDRANT_URL", default=None, help="Qdrant server URL (env QDRANT_URL).")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key (env QDRANT_API_KEY).")
@click.option("--registry", "registry_root", envvar="QDRANT_COMPAT_REGISTRY", default=None,
              help="Model registry folder (default ./qdrant_compat_registry).")
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
                       show_progress=not no_progress)


def _register_commands() -> None:
    from qdrant_compat.cli import collections, converters, evaluate, models, training, upgrade

    for mod in (training, models, collections, evaluate, converters, upgrade):
        for cmd in mod.COMMANDS:
            cli.add_command(cmd)


_register_commands()


def main() -> None:
    cli(prog_name="qdrant-compat")


if __name__ == "__main__":  # pragma: no cover
    main()
