"""``evaluate``: the cross-model retrieval test on a labelled image set."""

from __future__ import annotations

import click

from qdrant_compat.cli.context import CliState, cache_options, make_cache, pass_state


@click.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--model", "models_", multiple=True, required=True, help="NAME@VERSION, repeatable (query and gallery).")
@click.option("--adapter", "adapters", multiple=True, help="Converter id to add as a cell, repeatable.")
@click.option("--split", default="test", show_default=True, help="Split of an .npz bundle.")
@click.option("--max-classes", type=click.IntRange(min=1), default=None, help="Use only the first N classes of DATA.")
@click.option("--seen-classes", type=click.IntRange(min=1), default=None,
              help="Classes 0..N-1 (in DATA's order) count as seen (report seen/new).")
@click.option("--seen-classes-from", default=None,
              help="The seen classes by name: a registered NAME@VERSION (the classes its card names) or a text file "
                   "with one class name a line.")
@click.option("--record", "record", default=None, help="NAME@VERSION of a bct model: store the measured figures in its card.")
@click.option("--heatmap", type=click.Path(dir_okay=False), default=None, help="Write the query x gallery heat map (PNG).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None, help="Write an HTML report here.")
@cache_options
@pass_state
def evaluate(state: CliState, data: str, models_: tuple[str, ...], adapters: tuple[str, ...], split: str,
             max_classes: int | None, seen_classes: int | None, record: str | None, heatmap: str | None,
             report_dir: str | None, cache_dir: str | None, cache_size: float, no_cache: bool,
             seen_classes_from: str | None) -> None:
    """Query model x gallery model top-1/top-5/mAP (leave-one-out) on DATA, with the derived figures."""
    from qdrant_compat.data.sources import open_source
    from qdrant_compat.evaluation import evaluate_registered, record_bct_evidence

    src = open_source(data, split=split, max_classes=max_classes)
    seen = set(range(seen_classes)) if seen_classes else None
    if seen_classes_from:
        seen = _seen_by_name(state, seen_classes_from, list(src.classes))
    rep, emb = evaluate_registered(state.registry, list(models_), src, seen_classes=seen, adapters=list(adapters),
                                     cache=make_cache(cache_dir, cache_size, no_cache))
    out: dict = {"cells": rep.cells, "images": len(src)}
    if record:
        card = record_bct_evidence(state.registry, record, rep, emb)
        out["recorded"] = {"model": record, "evidence": card.lineage.evidence}
    if heatmap:
        from qdrant_compat.evaluation.plots import heatmap as draw

        out["heatmap"] = str(draw(rep.cells, heatmap))
    if report_dir:
        from qdrant_compat.evaluation.report import write_report

        out["report"] = str(write_report(rep.cells, report_dir, title=f"Compatibility on {data}"))

    def human() -> str:
        lines = ["| query/gallery | top-1 | top-5 | mAP |" + (" top-1 seen | top-1 new |" if seen else ""),
                 "|---|---|---|---|" + ("---|---|" if seen else "")]
        for k, m in rep.cells.items():
            lines.append(f"| {k} | {m['top1']:.1f} | {m['top5']:.1f} | {m['mAP']:.1f} |"
                         + (f" {m['top1_seen']:.1f} | {m['top1_new']:.1f} |" if seen else ""))
        if seen:
            lines.append(f"seen: the {len(seen)} of {len(src.classes)} classes the old model was trained on; new: the others")
        if record:
            ev = out["recorded"]["evidence"]
            lines.append(f"recorded in {record}: cross top-1 {ev['cross_top1']:.1f} vs old/old {ev['old_top1']:.1f} -> "
                         f"criterion {'met' if ev['criterion_met'] else 'NOT met'}"
                         + ("" if ev["criterion_met"] else ": recorded as a failing edge; its queries are refused on the old "
                            "model's vectors and 'upgrade plan' will not adopt it"))
        for k in ("heatmap", "report"):
            if k in out:
                lines.append(f"{k}: {out[k]}")
        return "\n".join(lines)

    state.emit(out, human)




def _seen_by_name(state: CliState, ref_or_file: str, classes: list[str]) -> set[int]:
    """Indices of ``classes`` named by a registered model's card or a text file (one name a line)."""
    from pathlib import Path

    from qdrant_compat.errors import InvalidArgumentError

    if Path(ref_or_file).is_file():
        names = {ln.strip() for ln in Path(ref_or_file).read_text().splitlines() if ln.strip()}
        where = ref_or_file
    else:
        names = set(state.registry.get_model(ref_or_file).card.classes)
        where = f"{ref_or_file}'s card"
        if not names:
            raise InvalidArgumentError(f"{ref_or_file}'s card names no classes (an imported model without --classifier); "
                                       "pass --seen-classes-from FILE with one class name a line")
    seen = {i for i, c in enumerate(classes) if c in names}
    if not seen:
        raise InvalidArgumentError(f"none of the {len(classes)} classes of the data is named in {where} "
                                   f"(e.g. {sorted(names)[:3]} vs {classes[:3]})")
    return seen
