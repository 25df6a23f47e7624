"""``upgrade plan|run|status|cutover|rollback|cleanup``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from qdrant_compat.cli.context import CliState, FiniteRange, pass_state
from qdrant_compat.engines import ENGINES
from qdrant_compat.enums import Layout, Phase, Priority, Strategy, choices

F = TypeVar("F", bound=Callable[..., Any])


def layout_options(f: F) -> F:
    """``--layout``, ``--into``, ``--alias``: where the new vectors go (plan and run take the same)."""
    f = click.option("--alias", default=None, help="Blue-green: the alias applications query (created if absent).")(f)
    f = click.option("--into", default=None, help="Blue-green: the new collection's name.")(f)
    return click.option("--layout", type=click.Choice(choices(Layout)), default=None,
                        help="in_place: a second named vector; blue_green: a new collection and an alias switch "
                             "(default: in place where the server can add a named vector).")(f)


@click.group("upgrade")
def upgrade_group() -> None:
    """Move a collection to a new model: plan, run, cutover, rollback, cleanup.

    In place (a second named vector) or blue-green (a new collection and an alias switch); resumable, no
    downtime, nothing lost.
    """


@upgrade_group.command("plan")
@click.argument("collection")
@click.option("--to", "target", required=True, help="NAME@VERSION to upgrade to.")
@click.option("--strategy", type=click.Choice(choices(Strategy)), default=None,
              help="Force a strategy (default: the plan's choice; see 'upgrade plan').")
@click.option("--converter", default=None, help="Converter id (old->new) for convert (default: the registered one).")
@click.option("--image-field", default="image_path", show_default=True,
              help="Payload field holding each point's image reference (path or URL).")
@layout_options
@pass_state
def plan(state: CliState, collection: str, target: str, strategy: str | None, converter: str | None, image_field: str,
         layout: str | None, into: str | None, alias: str | None) -> None:
    """Choose and explain a strategy, count the work, estimate the time. Changes nothing."""
    from qdrant_compat.upgrade import plan_upgrade

    p = plan_upgrade(state.client, collection, target, strategy=strategy, converter=converter, image_field=image_field,
                     layout=layout, into=into, alias=alias)
    state.emit(p, lambda: "\n".join([
        f"upgrade '{p.collection}': {p.source_model} (vector '{p.source}') -> {p.target_model}",
        f"strategy: {p.strategy}" + (f" (converter {p.converter})" if p.converter else ""),
        f"layout: {p.layout}" + (f" (into '{p.green}', " + (f"alias '{p.alias}')" if p.alias else "no alias yet: see below)") if p.green else ""),
        *[f"  - {r}" for r in p.reasons],
        f"points: {p.points} ({p.already_filled} already hold '{p.target}'); missing images: {p.images_missing}",
        f"estimate: {p.estimated_seconds:.0f}s ({1000 * p.seconds_per_point:.2f} ms/point, measured on a sample)",
    ]))


@upgrade_group.command("run")
@click.argument("collection")
@click.option("--to", "target", default=None, help="NAME@VERSION (omit to resume the recorded job).")
@click.option("--strategy", type=click.Choice(choices(Strategy)), default=None,
              help="Force a strategy (default: the plan's choice; see 'upgrade plan').")
@click.option("--converter", default=None, help="Converter id (old->new) for convert (default: the registered one).")
@click.option("--priority", type=click.Choice(choices(Priority)), default=Priority.UNCERTAINTY.value, show_default=True,
              help="Backfill order: uncertainty (the old model's least certain points first), random, id.")
@click.option("--image-field", default=None,
              help="Payload field holding each point's image reference (path or URL) [default: image_path, or the "
                   "resumed job's; given on a resume it replaces the job's and missing points are tried again].")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Points read, embedded and written per batch.")
@click.option("--max-batches", type=int, default=None, help="Stop after N batches (resume later).")
@click.option("--lock-ttl", type=FiniteRange(min=1), default=60.0, show_default=True, help="Seconds before a dead holder's lock expires.")
@click.option("--retry-missing", is_flag=True,
              help="Try every point not yet extracted again (missing and failed images too; unreachable ones are "
                   "retried by every run).")
@click.option("--read-workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Threads reading and preprocessing images while the model embeds (0: no pipeline).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
              help="Where images are decoded and embedded: this machine's threads, or Ray Data (the ray extra).")
@click.option("--ray-address", default=None, help="With --engine ray: the cluster (default: a local Ray).")
@click.option("--ray-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --engine ray: embedding actors (one ONNX Runtime session each).")
@click.option("--ray-writes", type=click.Choice(["auto", "workers", "driver"]), default="auto", show_default=True,
              help="With --engine ray: who writes to Qdrant. auto: the workers against a server (each opens its own "
                   "client; the API key from its own QDRANT_API_KEY), the driver for an embedded store.")
@click.option("--ray-writers", type=click.IntRange(min=1), default=None,
              help="With --engine ray and workers writing to a server: write actors (default: --ray-workers).")
@layout_options
@pass_state
def run(state: CliState, collection: str, target: str | None, strategy: str | None, converter: str | None,
        priority: str, image_field: str | None, batch_size: int, max_batches: int | None, lock_ttl: float,
        retry_missing: bool, read_workers: int, dry_run: bool, engine: str, ray_address: str | None, ray_workers: int,
        ray_writes: str, ray_writers: int | None, layout: str | None, into: str | None, alias: str | None) -> None:
    """Execute (or resume) the upgrade in batches, with progress and ETA."""
    from qdrant_compat.engines import make_engine
    from qdrant_compat.upgrade import run_upgrade

    eng = make_engine(engine, read_workers=read_workers, address=ray_address, workers=ray_workers, writes=ray_writes,
                      writers=ray_writers)

    store = state.client.store
    total = store.count(collection) if store.exists(collection) else 0
    with state.progress("upgrading", total) as bar:
        rep = run_upgrade(state.client, collection, target, strategy=strategy, converter=converter, priority=priority,
                          image_field=image_field, batch_size=batch_size, progress=bar, max_batches=max_batches,
                          lock_ttl=lock_ttl, dry_run=dry_run, retry_missing=retry_missing,
                          read_workers=read_workers, layout=layout, into=into, alias=alias, engine=eng)
    job = rep.job

    def human() -> str:
        if rep.dry_run or job is None:
            return f"dry run: {rep.remaining} point(s) to fill" + (f"; plan: {rep.plan['strategy']}" if rep.plan else "")
        if job.strategy == Strategy.ADOPT:
            return (f"job {job.id}: adopted {job.target_model} through its measured bct edge; it queries and writes "
                    f"vector '{job.source}' directly, nothing was rewritten")
        return (f"job {job.id} ({job.strategy}, {job.source_model} -> {job.target_model}): phase {job.phase}; "
                f"this run {rep.processed} point(s) in {rep.seconds:.1f}s; totals {json.dumps(job.counts)}; "
                f"{rep.remaining} point(s) without '{job.target}'" + (" (stopped early: run again)" if rep.stopped_early else "")
                + "".join(f"\n{n}" for n in rep.notes))

    state.emit(rep, human)


@upgrade_group.command("status")
@click.argument("collection")
@pass_state
def status(state: CliState, collection: str) -> None:
    """Per named vector: points extracted, converted, missing, failed."""
    from qdrant_compat.upgrade import upgrade_status

    s = upgrade_status(state.client, collection)

    def human() -> str:
        lines = [f"'{s.collection}': {s.points} points; read '{s.read}', write {s.write}"]
        if s.blue_green:
            bg = s.blue_green
            lines.append(f"  blue-green: '{bg['blue']}' -> '{bg['green']}'; alias '{bg['alias']}' points at "
                         f"'{bg['alias_points_at']}'" + ("" if bg["blue_exists"] else f" ('{bg['blue']}' dropped)"))
        for v, e in s.vectors.items():
            lines.append(f"  {v or '(unnamed)'}: {e.model} [{e.state}] {e.points} points: "
                         + (f"{e.indexed} indexed, " if e.indexed else "")
                         + f"{e.extracted} extracted, {e.converted} converted, {e.missing} missing, {e.failed} failed"
                         + (f", {e.unreachable} unreachable (tried again by the next run)" if e.unreachable else ""))
        j = s.job
        if j is not None:
            lines.append(f"  job {j.id}: {j.strategy} {j.source_model} -> {j.target_model}, phase {j.phase}"
                         + (f", locked by {j.lock.owner}" if j.lock else ""))
            if j.cleanup is not None:
                lines.append(f"  cleanup: backup {j.cleanup.backup}" + ("" if j.cleanup.dropped else " (drop not finished)"))
            name = (s.blue_green["alias"] or s.blue_green["blue"]) if s.blue_green else s.collection
            if Phase.CUTTING_OVER in (j.phase, (s.blue_green or {}).get("blue_phase")):
                lines.append(f"  a cutover is running or was interrupted: writes that cannot fill '{j.target}' are refused "
                             f"until it ends; if no cutover is running, 'upgrade cutover {name}' finishes it and "
                             f"'upgrade rollback {name}' undoes it")
            if s.lacking_target and j.phase in (Phase.CUT_OVER, Phase.CLEANED):
                lines.append(f"  {s.lacking_target} point(s) lack '{j.target}' (written around qdrant-compat since the "
                             f"cutover): 'upgrade run {s.collection}' fills them")
            lines += [f"    {e}" for e in j.errors[:5]]
        return "\n".join(lines)

    state.emit(s, human)


@upgrade_group.command("cutover")
@click.argument("collection")
@click.option("--allow-partial", is_flag=True, help="Accept converted vectors / missing images in place of re-extracted ones.")
@click.option("--grace", type=FiniteRange(min=0), default=2.0, show_default=True,
              help="Seconds between announcing the cutover and the final check (writes in flight land first).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_state
def cutover_cmd(state: CliState, collection: str, allow_partial: bool, grace: float, dry_run: bool) -> None:
    """Make the new model's vector the one queries and writes use (after verification)."""
    from qdrant_compat.upgrade import cutover

    out = cutover(state.client, collection, allow_partial=allow_partial, dry_run=dry_run, grace=grace)
    state.emit(out, f"{'would cut' if dry_run else 'cut'} '{collection}' over to '{out.read}'"
               + (f" (alias '{out.alias}': '{out.previous}' -> '{out.collection}')" if out.alias else "")
               + (" (it already was)" if out.already else ""))


@upgrade_group.command("rollback")
@click.argument("collection")
@click.option("--grace", type=FiniteRange(min=0), default=2.0, show_default=True,
              help="Blue-green: seconds the new collection keeps copying writes into the old one after the switch.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_state
def rollback_cmd(state: CliState, collection: str, grace: float, dry_run: bool) -> None:
    """Return queries and writes to the old model's vector while it exists."""
    from qdrant_compat.upgrade import rollback

    out = rollback(state.client, collection, dry_run=dry_run, grace=grace)
    state.emit(out, f"{'would roll' if dry_run else 'rolled'} '{collection}' back to '{out.read}'"
               + (f" (alias '{out.alias}' -> '{out.collection}')" if out.alias else ""))


@upgrade_group.command("cleanup")
@click.argument("collection")
@click.option("--yes", is_flag=True, help="Confirm dropping the old vector (a backup is made first).")
@click.option("--backup-dir", type=click.Path(), default=None,
              help="Embedded store: folder for the JSON-lines backup (default: beside the store).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_state
def cleanup_cmd(state: CliState, collection: str, yes: bool, backup_dir: str | None, dry_run: bool) -> None:
    """Drop the old model's vector after cutover, backing it up first."""
    from qdrant_compat.upgrade import cleanup

    out = cleanup(state.client, collection, yes=yes, backup_dir=backup_dir, dry_run=dry_run)
    what = f"collection '{out.drops}'" if out.drops_collection else f"vector '{out.drops}' of '{collection}'"
    state.emit(out, f"{'would drop' if dry_run else 'dropped'} {what}"
               + (f"; backup: {out.backup}" if out.backup else "") + (" (resumed)" if out.resumed else "")
               + (f"\nwarning: {out.left_without_vector} point(s) written around qdrant-compat during the cleanup hold no "
                  f"vector now (their old vectors are in the backup); 'upgrade run {collection}' re-extracts them"
                  if out.left_without_vector else ""))


