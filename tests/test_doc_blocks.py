"""Every ``bash`` and ``python`` block of the README and ``docs/`` runs as written.

The blocks of one file run in order, in one fresh working folder (``examples/`` linked in, so the paths the
blocks name resolve as in a clone), each in its own process: a block may use what an earlier one wrote. A block
is skipped only when an HTML comment on the line before it says why::

    <!-- docs-test: skip: needs a Qdrant server -->

``<!-- docs-test: expect: TEXT -->`` also checks that TEXT is in the block's output, and
``<!-- docs-test: margin: 1 -->`` that the block trained a model whose gate ended ``compatible: new/old X >
old/old Y (+D)`` with D at least 1 (every shipped world keeps a margin of a point: benchmarks/shipped_worlds.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

RUN = {"bash": "bash", "sh": "bash", "python": "python"}
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(skip|expect|margin):\s*(.+?)\s*-->")
GATE = re.compile(r"compatible: new/old [\d.]+ > old/old [\d.]+ \(\+([\d.]+)\)")
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    file: Path
    line: int
    lang: str
    code: str
    skip: str | None = None
    expect: str | None = None
    margin: str | None = None  # the training gate's sentence must show new/old - old/old >= this (Q8)


def blocks(path: Path) -> list[Block]:
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = lines.index("```", i + 1)
        if m.group(1) in RUN:
            b = Block(path, i + 1, RUN[m.group(1)], "\n".join(lines[i + 1 : j]) + "\n")
            k = i - 1
            while k >= 0 and (d := DIRECTIVE.search(lines[k])):
                setattr(b, d.group(1), d.group(2))
                k -= 1
            out.append(b)
        i = j + 1
    return out


def test_every_runnable_block_is_found():
    found = {p.name: blocks(p) for p in FILES}
    readme = found["README.md"]
    assert len([b for b in readme if b.skip is None]) >= 3  # the CLI, Python and existing-collection walkthroughs
    for bs in found.values():
        for b in bs:
            assert b.skip is None or len(b.skip) >= 10, f"{b.file.name}:{b.line}: a skip must say why"


@pytest.mark.parametrize("path", [p for p in FILES if any(b.skip is None for b in blocks(p))], ids=lambda p: p.name)
def test_blocks_run_as_written(path, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    for k in ("QDRANT_COMPAT_PATH", "QDRANT_COMPAT_REGISTRY", "QDRANT_URL", "QDRANT_API_KEY"):
        env.pop(k, None)
    for b in blocks(path):
        if b.skip is not None:
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", b.code] if b.lang == "bash" else [sys.executable, "-c", b.code]
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        where = f"{path.name}:{b.line} ({b.lang} block)"
        assert res.returncode == 0, f"{where} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        if b.expect:
            assert b.expect in res.stdout + res.stderr, f"{where}: {b.expect!r} not in its output:\n{res.stdout[-3000:]}"
        if b.margin:
            margins = [float(m) for m in GATE.findall(res.stdout + res.stderr)]
            assert margins and margins[-1] >= float(b.margin), f"{where}: gate margins {margins}, need >= {b.margin}"


def test_directives_are_read(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("<!-- docs-test: skip: needs a Qdrant server -->\n```bash\nexit 1\n```\n\n"
                  "<!-- docs-test: margin: 1 -->\n```python\nprint(1)\n```\n\n```json\n{}\n```\n")
    a, b = blocks(md)
    assert (a.skip, a.lang, b.margin, b.lang, b.code) == ("needs a Qdrant server", "bash", "1", "python", "print(1)\n")
    line = "compatible: new/old 53.6 > old/old 52.5 (+1.1), new/new 55.7 (epoch 7 kept)"
    assert [float(m) for m in GATE.findall(line)] == [1.1]
    assert GATE.findall("not compatible after 8 epochs (best new/old 39.0 vs old/old 42.0)") == []
