"""``converter fit|list|inspect`` and ``convert``."""

from __future__ import annotations

import json

import click

from converters.kinds import list_converters
from qdrant_compat.cli.context import CliState, cache_options, make_cache, pass_state
from qdrant_compat.enums import Direction, choices


@click.group("converter")
def converter_group() -> None:
    """Transformation heads between two models' spaces."""


@converter_group.command("fit")
@click.argument("data", type=click.Path(exists=True))
@click.option("--source", required=True, help="NAME@VERSION whose vectors are transformed.")
@click.option("--target", required=True, help="NAME@VERSION whose space they are mapped into.")
@click.option("--kind", type=click.Choice(list_converters()), default="mlp", show_default=True,
              help="Head architecture: linear (ridge), procrustes (orthogonal), lowrank, mlp (residual).")
@click.option("--direction", type=click.Choice(choices(Direction)), default=Direction.OLD_TO_NEW.value, show_default=True,
              help="old_to_new rewrites stored vectors; new_to_old adapts queries.")
@click.option("--id", "conv_id", default=None, help="Converter id (default derived from the models and kind).")
@click.option("--split", default="train", show_default=True, help="Split of an .npz bundle.")
@click.option("--max-classes", type=click.IntRange(min=1), default=None, help="Use only the first N classes of DATA.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fit and the hold-out split.")
@click.option("--eval-data", type=click.Path(exists=True), default=None,
              help="A labelled image set (folder, npz, list) on which the head's retention is also measured, as evaluate does.")
@click.option("--eval-split", default="test", show_default=True, help="Split of an --eval-data .npz bundle.")
@click.option("--option", "options", multiple=True, help="KEY=VALUE head option (rank=32, hidden=512; class_weight=0.5: target classifier term).")
@cache_options
@pass_state
def fit(state: CliState, data: str, source: str, target: str, kind: str, direction: str, conv_id: str | None,
        split: str, max_classes: int | None, seed: int, options: tuple[str, ...], cache_dir: str | None,
        cache_size: float, no_cache: bool, eval_data: str | None, eval_split: str) -> None:
    """Fit a head on the images of DATA (both models are run over them), export and register it."""
    from qdrant_compat.errors import InvalidArgumentError, require_torch

    require_torch("'converter fit'")
    from qdrant_compat.bridges import fit_and_register
    from qdrant_compat.data.sources import open_source

    opts = {}
    for o in options:
        k, sep, v = o.partition("=")
        if not sep:
            raise InvalidArgumentError(f"--option takes KEY=VALUE, got {o!r}")
        opts[k] = json.loads(v) if v.replace(".", "", 1).lstrip("-").isdigit() else v
    src = open_source(data, split=split, max_classes=max_classes)
    ev_src = open_source(eval_data, split=eval_split, max_classes=max_classes) if eval_data else None
    card = fit_and_register(state.registry, source, target, kind, direction=direction, images=src, conv_id=conv_id,
                            seed=seed, options=opts, cache=make_cache(cache_dir, cache_size, no_cache), eval_images=ev_src)

    def figure(name: str, m: dict) -> str:  # type: ignore[type-arg]
        cell = f"{card.target}/convert({card.source})" if direction == "old_to_new" else f"adapt({card.source})/{card.target}"
        return (f"\n  {name}: {cell} top-1 {m['top1']:.1f} vs {card.target}/{card.target} {m['base_top1']:.1f} "
                f"(retention {m['top1_retention']:.3f}; mAP {m['mAP']:.1f} vs {m['base_mAP']:.1f}) on {m['measured_on']}")

    ho, ev = card.fit.get("holdout"), card.fit.get("eval")
    state.emit(card.to_dict(), f"registered converter {card.id} ({card.source} -> {card.target}, {card.kind}): "
               f"val cosine {card.fit['val_cosine']:.3f}"
               + (figure("held out", ho) if ho else "") + (figure("evaluation set", ev) if ev else ""))


@converter_group.command("list")
@pass_state
def list_(state: CliState) -> None:
    """Registered converters."""
    rows = [c.to_dict() for c in state.registry.list_converters()]
    state.emit(rows, lambda: "\n".join(
        f"{r['id']:<40} {r['source']} -> {r['target']} ({r['kind']}, {r['direction']}) "
        f"val cosine {r['fit'].get('val_cosine', float('nan')):.3f}" for r in rows) or "no converters registered")


@converter_group.command("inspect")
@click.argument("conv_id")
@pass_state
def inspect(state: CliState, conv_id: str) -> None:
    """Show a converter's card (verifying its fingerprint)."""
    c = state.registry.get_converter(conv_id)
    state.emit({**c.card.to_dict(), "onnx": str(c.onnx_path)}, json.dumps(c.card.to_dict(), indent=2))


@click.command()
@click.argument("collection")
@click.option("--converter", "conv_id", required=True, help="Converter id (old->new) to apply.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Points converted per write.")
@click.option("--dry-run", is_flag=True, help="Say what would be converted; change nothing.")
@pass_state
def convert(state: CliState, collection: str, conv_id: str, batch_size: int, dry_run: bool) -> None:
    """Rewrite COLLECTION's stored vectors through a converter into the target model's named vector.

    Resumable: run it again after any interruption. Payloads are never touched (besides provenance).
    """
    from qdrant_compat.upgrade import run_upgrade

    conv = state.registry.get_converter(conv_id).card
    with state.progress("converting", state.client.store.count(collection)) as bar:
        rep = run_upgrade(state.client, collection, conv.target, strategy="convert", converter=conv_id,
                          batch_size=batch_size, progress=bar, dry_run=dry_run)
    state.emit(rep, f"{'would convert' if dry_run else 'converted'} {rep.processed if not dry_run else rep.remaining} "
               f"point(s) of '{collection}' into '{conv.target}'; {rep.remaining} without it")


