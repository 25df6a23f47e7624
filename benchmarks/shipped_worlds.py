"""Q8: every world the project ships meets the compatibility criterion with a margin of at least +1 top-1 point.

    python -m benchmarks.shipped_worlds [--out benchmarks/results/shipped_worlds.json] [--only NAME ...]

Runs, each in a fresh folder, the worlds a user meets first and reads the figures they print:

* ``walkthrough``: the README's five-minute CLI block (``examples/quickstart/walkthrough.sh``);
* ``readme_python``: the README's "The same in Python" block, as written;
* ``existing_collection``: ``examples/existing_collection/run.py`` (the team's ONNX model, blue-green);
* ``demo``: ``examples/quickstart/demo.py`` (what ``make demo`` runs);

and takes ``p1_seed0..2`` from ``benchmarks/results/p1_bct.json`` and ``p2`` from ``p2_bct.json`` when a GPU run
wrote it. new/old, old/old and new/new are the training gate's figures (top-1 %, the gate set named in the
sentence), or the benchmark's validation cells for P1/P2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GATE = re.compile(r"compatible: new/old ([\d.]+) > old/old ([\d.]+) \(\+([\d.]+)\), new/new ([\d.]+)")
FAIL = re.compile(r"not compatible after \d+ epochs \(best new/old ([\d.]+) vs old/old ([\d.]+)")


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The same in Python"):]
    return section[section.index("```python\n") + 10: section.index("```\n", section.index("```python\n") + 10)]


WORLDS = {
    "walkthrough": (["bash", "examples/quickstart/walkthrough.sh", "w"], "bash examples/quickstart/walkthrough.sh"),
    "readme_python": ([sys.executable, "-c", "<README>"], "the README's Python block"),
    "existing_collection": ([sys.executable, "examples/existing_collection/run.py", "--out", "e"],
                            "python examples/existing_collection/run.py"),
    "demo": ([sys.executable, "examples/quickstart/demo.py", "--out", "d"], "python examples/quickstart/demo.py"),
}


def parse(output: str) -> dict[str, float | bool]:
    """The gate's figures from a run's output (the last gate sentence: v2's, after v1's plain training)."""
    ok = GATE.findall(output)
    if ok:
        new_old, old_old, margin, new_new = map(float, ok[-1])
        return {"new_old": new_old, "old_old": old_old, "margin": margin, "new_new": new_new, "criterion_met": True}
    bad = FAIL.findall(output)
    if bad:
        new_old, old_old = map(float, bad[-1])
        return {"new_old": new_old, "old_old": old_old, "margin": round(new_old - old_old, 2), "new_new": float("nan"),
                "criterion_met": False}
    raise RuntimeError("no gate sentence in the output")


def run_world(name: str) -> dict[str, object]:
    cmd, shown = WORLDS[name]
    cmd = [_readme_python() if c == "<README>" else c for c in cmd]
    with tempfile.TemporaryDirectory(prefix=f"qc-{name}-") as tmp:
        os.symlink(ROOT / "examples", Path(tmp) / "examples")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        t0 = time.time()
        res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
        seconds = time.time() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return {**parse(res.stdout + res.stderr), "command": shown, "seconds": round(seconds, 1)}


def from_results(file: str, cell_new: str, label: str) -> dict[str, dict[str, object]]:
    path = RESULTS / file
    if not path.exists():
        return {}
    d = json.loads(path.read_text())
    if d.get("valid") is False:
        return {}
    cells, out = d["cells"], {}
    for i, seed in enumerate(d["seeds"]):
        oo, no, nn = cells["old/old"]["top1"][i], cells[f"{cell_new}/old"]["top1"][i], cells[f"{cell_new}/{cell_new}"]["top1"][i]
        out[f"{label}_seed{seed}"] = {"new_old": round(no, 2), "old_old": round(oo, 2), "margin": round(no - oo, 2),
                                      "new_new": round(nn, 2), "criterion_met": no > oo,
                                      "command": f"{d.get('command', '')} (from benchmarks/results/{file}, {d.get('date', '')})"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "shipped_worlds.json"))
    ap.add_argument("--only", nargs="*", choices=list(WORLDS), default=None)
    args = ap.parse_args(argv)
    worlds: dict[str, dict[str, object]] = {}
    out = Path(args.out)
    if args.only and out.exists():  # --only reruns some worlds: the others keep their last figures
        worlds.update({k: v for k, v in json.loads(out.read_text()).get("worlds", {}).items() if k in WORLDS})
    for name in args.only or WORLDS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        worlds[name] = run_world(name)
    worlds.update(from_results("p1_bct.json", "bct", "p1"))
    worlds.update(from_results("p2_bct.json", "bct", "p2"))
    met = {k: bool(v["criterion_met"]) and float(v["margin"]) >= 1.0 for k, v in worlds.items()}  # type: ignore[arg-type]
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPUs, {sys.platform}",
           "target": "Q8: every shipped world meets the criterion with a margin >= +1 top-1 point",
           "met": all(met.values()), "worlds": worlds,
           "not_run": [] if (RESULTS / "p2_bct.json").exists() else ["p2 (needs a GPU; no p2_bct.json)"]}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print("| world | new/old | old/old | margin | new/new | ≥ +1 |\n|---|---|---|---|---|---|")
    for k, v in worlds.items():
        print(f"| {k} | {v['new_old']} | {v['old_old']} | {float(v['margin']):+.2f} | {v['new_new']} | "  # type: ignore[arg-type]
              f"{'yes' if met[k] else '**no**'} |")
    return 0 if doc["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
