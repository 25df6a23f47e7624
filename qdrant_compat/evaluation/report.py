"""A self-contained HTML report (images inlined as base64 PNG) of a compatibility evaluation."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from qdrant_compat.evaluation import plots


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _models(cells: dict[str, dict[str, float]]) -> list[str]:
    out: list[str] = []
    for key in cells:
        q = plots.matrix_of({key: cells[key]})[0][0]
        if q not in out:
            out.append(q)
    return out


def verdicts(cells: dict[str, dict[str, float]], *, indep: str | None = None, metric: str = "top1") -> list[str]:
    """One sentence per (later model, earlier model) pair of ``cells``: whether the later model's queries search the
    earlier model's gallery at least as well as the earlier model did (the compatibility criterion), with the update
    gain G and the compatibility cost when ``indep`` (an independently trained new model) is among the cells."""
    names = [m for m in _models(cells) if m != indep]
    out = []
    for i, old in enumerate(names):
        for new in names[i + 1:]:
            oo, cross = cells.get(f"{old}/{old}", {}).get(metric), cells.get(f"{new}/{old}", {}).get(metric)
            if oo is None or cross is None:
                continue
            met = cross > oo
            line = (f"{new} → {old}: criterion {'met' if met else 'NOT met'}: {new}/{old} top-1 {cross:.1f} "
                    f"{'>' if met else '≤'} {old}/{old} {oo:.1f} ({cross - oo:+.1f})")
            nn = cells.get(f"{new}/{new}", {}).get(metric)
            if nn is not None:
                line += f"; {new}/{new} {nn:.1f}"
            ii = cells.get(f"{indep}/{indep}", {}).get(metric) if indep else None
            if ii is not None and ii != oo:
                line += f"; update gain G {(cross - oo) / (ii - oo):.2f}"
                if nn is not None:
                    line += f", compatibility cost {ii - nn:+.1f}"
            out.append(line + ("" if met else " — bridge with `converter fit`, or backfill"))
    return out


GLOSSARY = ("query/gallery: the model that embeds the queries / the model whose stored vectors are searched. "
            "top-1: share of queries whose nearest other image has the query's class (leave-one-out); "
            "mAP: mean average precision over the whole ranking. seen: the classes the old model was trained on "
            "(evaluate --seen-classes); new: the others. The criterion: new/old above old/old.")


def write_report(
    cells: dict[str, dict[str, float]],
    directory: str | Path,
    *,
    title: str = "Compatibility report",
    curves: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    baseline: float | None = None,
    notes: Sequence[str] = (),
    indep: str | None = None,
) -> Path:
    """Write ``index.html`` plus the PNGs it shows into ``directory``; returns the HTML path.

    The page opens with the verdict (see :func:`verdicts`) and a one-line glossary, then the table and pictures.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    hm = plots.heatmap(cells, d / "matrix.png")
    bars = plots.seen_new_bars(cells, d / "seen_new.png")
    curve = plots.curves(curves, d / "backfill.png", baseline=baseline) if curves else None
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{m['top1']:.1f}</td><td>{m['top5']:.1f}</td><td>{m['mAP']:.1f}</td>"
        f"<td>{m.get('top1_seen', float('nan')):.1f}</td><td>{m.get('top1_new', float('nan')):.1f}</td></tr>"
        for k, m in cells.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}figure{{display:inline-block;margin:1em}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
{''.join(f'<p class="verdict"><b>{html.escape(v)}</b></p>' for v in verdicts(cells, indep=indep))}
<p>Cross-model retrieval test: each query model searches each gallery model's vectors of the same images,
leave-one-out, cosine similarity. Figures in %.</p>
<p class="glossary"><small>{html.escape(GLOSSARY)}</small></p>
<table id="cells"><thead><tr><th>query/gallery</th><th>top-1</th><th>top-5</th><th>mAP</th><th>top-1 seen</th><th>top-1 new</th></tr></thead>
<tbody>{rows}</tbody></table>
{''.join(f'<p class="note">{html.escape(n)}</p>' for n in notes)}
{_img(hm, 'query x gallery top-1 heat map')}
{_img(bars, 'top-1 on seen and new classes')}
{_img(curve, 'backfill curve') if curve else ''}
<script>
// lets a headless browser (and the tests) confirm that every picture decoded
window.addEventListener("load", () => {{
  const imgs = [...document.images];
  document.body.dataset.imagesOk = imgs.filter(i => i.complete && i.naturalWidth > 0).length + "/" + imgs.length;
}});
</script>
</body></html>"""
    out = d / "index.html"
    out.write_text(page)
    return out
