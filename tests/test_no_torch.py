"""The runtime install works without torch: every serving and upgrade command runs in a process where
importing torch, torchvision or onnx fails, and the training commands name the extra to install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np

from qdrant_compat.data import load_npz, write_image_folder

from .conftest import OMNIGLOT, ROOT

BLOCKER = """
import sys, importlib.abc
class _NoTraining(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTraining())
"""


def _run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_import_and_help_load_no_torch():
    res = _run_python(textwrap.dedent("""
        import sys
        import qdrant_compat
        from qdrant_compat.cli.main import cli
        from click.testing import CliRunner
        r = CliRunner().invoke(cli, ["--help"])
        assert r.exit_code == 0 and "upgrade" in r.output, r.output
        heavy = sorted(m for m in ("torch", "torchvision", "onnx", "qdrant_client", "onnxruntime") if m in sys.modules)
        print(heavy)
    """))
    assert res.returncode == 0, res.stderr
    # --help loads neither torch nor the Qdrant client nor ONNX Runtime: it only lists commands
    assert res.stdout.strip() == "[]"


def test_runtime_commands_work_with_torch_blocked(tmp_path, trained, other_model):
    from qdrant_compat import Registry
    from qdrant_compat.bridges import fit_and_register
    from qdrant_compat.data import open_source

    shutil.copytree(trained[0].root, tmp_path / "reg")
    src = load_npz(OMNIGLOT, "test")
    write_image_folder(src, tmp_path / "gallery", np.flatnonzero(src.labels < 10))
    # a converter is fitted here, where torch exists; applying it must not need torch
    reg = Registry(tmp_path / "reg")
    fit_and_register(reg, "omni@1", "omni-indep@2", "linear",
                     images=open_source(OMNIGLOT, split="train", max_classes=10), conv_id="c12")
    commands = [
        ["collection", "create", "g", "--model", "omni@1"],
        ["index", str(tmp_path / "gallery"), "--collection", "g", "--model", "omni@1"],
        ["search", str(next((tmp_path / "gallery").rglob("*.png"))), "--collection", "g", "--model", "omni@1"],
        ["collection", "info", "g"],
        ["collection", "list"],
        ["model", "list"],
        ["converter", "list"],
        ["evaluate", str(OMNIGLOT), "--max-classes", "10", "--model", "omni@1", "--model", "omni-indep@2",
         "--adapter", "c12"],
        ["upgrade", "plan", "g", "--to", "omni-indep@2"],
        ["upgrade", "run", "g", "--to", "omni-indep@2"],
        ["upgrade", "status", "g"],
        ["upgrade", "cutover", "g"],
        ["upgrade", "rollback", "g"],
        ["upgrade", "cutover", "g"],
        ["upgrade", "cleanup", "g", "--yes", "--backup-dir", str(tmp_path / "bk")],
        ["train", str(OMNIGLOT), "--out", str(tmp_path / "ck")],
        ["converter", "fit", str(OMNIGLOT), "--source", "omni@1", "--target", "omni-indep@2"],
    ]
    script = BLOCKER + textwrap.dedent(f"""
        import json
        from click.testing import CliRunner
        from qdrant_compat.cli.main import cli
        base = ["--path", {str(tmp_path / "store")!r}, "--registry", {str(tmp_path / "reg")!r}, "--no-progress", "--json"]
        out = []
        for args in {commands!r}:
            r = CliRunner().invoke(cli, base + args)
            out.append({{"args": args, "code": r.exit_code, "output": r.output[-2000:],
                         "exc": repr(r.exception) if r.exit_code not in (0, 1) else None}})
        out.append({{"torch_loaded": "torch" in sys.modules}})
        print(json.dumps(out))
    """)
    res = _run_python(script, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert results[-1] == {"torch_loaded": False}
    by_cmd = {" ".join(r["args"][:2]): r for r in results[:-1]}
    for r in results[:-3]:  # every serving and upgrade command succeeds
        assert r["code"] == 0, (r["args"], r["output"], r["exc"])
    status = json.loads(by_cmd["upgrade status"]["output"])
    assert status["job"]["strategy"] == "convert+backfill" and status["vectors"]["omni-indep@2"]["extracted"] > 0
    assert any("convert:linear(omni@1)" in k for k in json.loads(by_cmd["evaluate " + str(OMNIGLOT)]["output"])["cells"])
    for cmd in ("train " + str(OMNIGLOT), "converter fit"):  # the training side names the extra to install
        r = by_cmd[cmd]
        assert r["code"] == 1, r
        assert 'pip install "qdrant-compat[train]"' in r["output"] and "Traceback" not in r["output"]
