"""Print the Markdown tables of every results file in benchmarks/results (for the README).

    python -m benchmarks.summary
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks.common import RESULTS


def ms(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    return f"{a.mean():.1f} ± {a.std():.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
    return str(v)


def targets(d: dict) -> list[str]:
    return [f"| {k} | {fmt(t['value'])} | {'met' if t['met'] else '**missed**'} |" for k, t in d.get("targets", {}).items()]


def main() -> None:
    for name in ("p1_bct.json", "p1_converters.json", "p1_backfill.json", "s4_training_time.json", "s5_crash.json", "p2_bct.json"):
        f = RESULTS / name
        if not f.exists():
            continue
        d = json.loads(f.read_text())
        print(f"\n#### {name} — `{d['command']}` — {d['machine']}, {d['date']}, seeds {d.get('seeds', d.get('seed'))}\n")
        if "cells" in d and name != "p1_backfill.json":
            print("| cell (query/gallery) | top-1 | top-5 | mAP | top-1 seen | top-1 new |\n|---|---|---|---|---|---|")
            for c, m in d["cells"].items():
                print(f"| {c} | {ms(m['top1'])} | {ms(m['top5'])} | {ms(m['mAP'])} | {ms(m['top1_seen'])} | {ms(m['top1_new'])} |")
        if name == "p1_converters.json":
            print("\n| head | retention top-1 | retention mAP | adapter gain (top-1 pts) | fit s (convert / adapt) |\n|---|---|---|---|---|")
            for h, x in d["derived"].items():
                print(f"| {h} | {np.mean(x['retention_top1']):.3f} | {np.mean(x['retention_mAP']):.3f} | "
                      f"{np.mean(x['adapter_gain']):+.1f} | {x['fit_seconds_convert']:.1f} / {x['fit_seconds_adapt']:.1f} |")
        if name == "p1_backfill.json":
            fr = d["curves"]["random"]["fraction"]
            print("| order | " + " | ".join(f"{int(100 * x)}%" for x in fr) + " | area |\n|---|" + "---|" * (len(fr) + 1))
            for k, c in d["curves"].items():
                mean = np.mean(c["top1"], axis=0)
                print(f"| {k} | " + " | ".join(f"{v:.1f}" for v in mean) + f" | {np.mean(d['derived']['area'][k]):.2f} |")
            print(f"\nold/old {ms(d['cells']['old/old']['top1'])}")
        if "system" in d and d["system"]:
            print("\n" + ", ".join(f"{k} {fmt(v)}" for k, v in d["system"].items()))
        rows = targets(d)
        if rows:
            print("\n| target | value | |\n|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
