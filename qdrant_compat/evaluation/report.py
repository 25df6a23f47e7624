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


def write_report(
    cells: dict[str, dict[str, float]],
    directory: str | Path,
    *,
    title: str = "Compatibility report",
    curves: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    baseline: float | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``index.html`` plus the PNGs it shows into ``directory``; returns the HTML path."""
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
<p>Cross-model retrieval test: each query model searches each gallery model's vectors of the same images,
leave-one-out, cosine similarity. Figures in %.</p>
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
