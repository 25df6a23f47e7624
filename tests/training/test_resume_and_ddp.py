"""``train`` as a user runs it: SIGKILL then --resume equals an uninterrupted run; torchrun DDP (2 gloo processes)
equals one process at the same global batch; --init-from an imported model; --json and progress in a pipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ..conftest import OMNIGLOT

BIN = Path(sys.executable).parent
COMMON = ["--max-classes", "60", "--channels", "1", "--size", "28", "--dim", "16", "--lr", "3e-3", "--device", "cpu"]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "QDRANT_COMPAT_VECTOR_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(tmp: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "qdrant-compat"), "--registry", str(tmp / "reg"), "--no-progress", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(tmp))
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    args = ["train", str(OMNIGLOT), *COMMON, "--epochs", "2", "--batch-size", "32", "--augment", "light",
            "--checkpoint-every", "4", "--deterministic"]
    _cli(tmp_path, *args, "--out", str(tmp_path / "a"), "--workers", "0")
    cmd = [str(BIN / "qdrant-compat"), "--registry", str(tmp_path / "reg"), "--no-progress", *args,
           "--out", str(tmp_path / "b"), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp_path))
    state = tmp_path / "b" / "resume.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "b" / "training.json").exists()
    saved = torch.load(state, weights_only=True)
    steps_per_epoch = 900 // 32
    assert 0 < saved["global_step"] < steps_per_epoch and saved["step"] > 0  # killed in the middle of epoch 1
    res = _cli(tmp_path, "--json", "train", "--resume", str(tmp_path / "b"))
    out = json.loads(res.stdout)
    assert out["resumed_from_step"] == saved["global_step"] and len(out["history"]) == 2
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert not state.exists()  # removed once the final checkpoint is written
    ta = json.loads((tmp_path / "a" / "training.json").read_text())["history"]
    tb = json.loads((tmp_path / "b" / "training.json").read_text())["history"]
    assert [r["loss"] for r in ta] == pytest.approx([r["loss"] for r in tb], rel=1e-6)


def test_resume_refuses_other_settings_and_a_finished_run(tmp_path, monkeypatch):
    args = ["train", str(OMNIGLOT), *COMMON, "--epochs", "1", "--batch-size", "64", "--workers", "0"]
    _cli(tmp_path, *args, "--out", str(tmp_path / "a"))
    cmd = [str(BIN / "qdrant-compat"), "--registry", str(tmp_path / "reg"), "train", "--resume", str(tmp_path / "a")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path))
    assert done.returncode == 1 and "training there already finished; nothing to resume" in done.stderr
    # a run whose last state is left behind (as by a kill after its final epoch), resumed with another lr: refused
    from click.testing import CliRunner

    from qdrant_compat.cli.main import cli
    from qdrant_compat.training import resume

    monkeypatch.setattr(resume, "remove_state", lambda d: None)
    base = ["--registry", str(tmp_path / "reg"), "--no-progress"]
    first = CliRunner().invoke(cli, [*base, *args, "--out", str(tmp_path / "b")])
    assert first.exit_code == 0 and (tmp_path / "b" / "resume.pt").exists(), first.output
    other = CliRunner().invoke(cli, [*base, "train", "--resume", str(tmp_path / "b"), "--lr", "0.01"])
    assert other.exit_code == 1
    assert "cannot resume: the run was started with other settings (lr: 0.003 -> 0.01)" in other.output


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun is not installed beside this Python")
def test_torchrun_two_gloo_processes_equal_one_process_at_the_same_global_batch(tmp_path):
    # BCT losses (global-batch contrastive terms) against a frozen old model run on each flipped view; a frozen
    # backbone and a linear head have no batch statistics, so the only difference left is the reduction order
    _cli(tmp_path, "train", str(OMNIGLOT), *COMMON, "--epochs", "1", "--batch-size", "64", "--workers", "0",
         "--out", str(tmp_path / "v1"), "--register", "o@1")
    args = ["train", str(OMNIGLOT), *COMMON, "--epochs", "2", "--batch-size", "64", "--freeze-backbone", "--head", "linear",
            "--augment", "flip", "--workers", "1", "--old-model", "o@1"]
    _cli(tmp_path, *args, "--out", str(tmp_path / "one"))
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "qdrant_compat.cli.main",
           "--registry", str(tmp_path / "reg"), "--no-progress", "--json", *args, "--out", str(tmp_path / "two")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)  # rank 0 alone reports, saves and registers
    assert out["processes"] == 2
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-5, rtol=1e-4, msg=k)
    h1 = json.loads((tmp_path / "one" / "training.json").read_text())["history"]
    h2 = json.loads((tmp_path / "two" / "training.json").read_text())["history"]
    for a, b in zip(h1, h2, strict=True):
        assert a["cross_contrastive"] == pytest.approx(b["cross_contrastive"], rel=1e-4)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-9)
    assert h2[1]["train_acc"] > h2[0]["train_acc"]  # it trained (the loss itself rises with the gate's weight boost)


def test_init_from_an_imported_torchvision_model(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    net = torchvision.models.resnet18(weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    _cli(tmp_path, "model", "import", str(tmp_path / "r18.safetensors"), "--arch", "resnet18", "--size", "32",
         "--name", "team", "--version", "1")
    res = _cli(tmp_path, "--json", "train", str(OMNIGLOT), "--max-classes", "8", "--channels", "3", "--epochs", "1",
               "--batch-size", "32", "--workers", "0", "--init-from", "team@1", "--weights", str(tmp_path / "r18.safetensors"),
               "--freeze-backbone", "--augment", "flip", "--dim", "16", "--out", str(tmp_path / "v2"))
    assert json.loads(res.stdout)["input"] == "stream"
    w = _weights(tmp_path / "v2")
    for k, v in net.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(w[f"backbone.net.{k}"], v), k  # started from (and, frozen, kept) the imported weights
    train = json.loads((tmp_path / "v2" / "training.json").read_text())
    assert train["input"]["size"] == 32 and train["init_from"] == "team@1"  # the card's input spec by default
    wrong = tmp_path / "other.safetensors"
    save_file({k: v + 1 for k, v in net.state_dict().items() if v.is_floating_point()}, str(wrong))
    cmd = [str(BIN / "qdrant-compat"), "--registry", str(tmp_path / "reg"), "train", str(OMNIGLOT), "--init-from", "team@1",
           "--weights", str(wrong), "--out", str(tmp_path / "v3")]
    bad = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path))
    assert bad.returncode == 1 and "is not the file team@1 was imported from (r18.safetensors" in bad.stderr


def test_progress_lines_in_a_pipe_and_a_json_summary(tmp_path):
    cmd = [str(BIN / "qdrant-compat"), "--registry", str(tmp_path / "reg"), "train", str(OMNIGLOT), *COMMON,
           "--epochs", "2", "--batch-size", "64", "--workers", "0", "--out", str(tmp_path / "a")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2 and "norm_softmax" in lines[0] and "img/s" in lines[0]  # stderr is a pipe: lines, no bar
    assert "trained 900 images / 60 classes" in res.stdout
    quiet = subprocess.run([*cmd[:3], "--no-progress", "--json", *cmd[3:]], capture_output=True, text=True, env=_env(tmp_path))
    doc = json.loads(quiet.stdout)
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("epoch ")]
    assert [r["epoch"] for r in doc["history"]] == [1, 2] and doc["images_per_s"] > 0 and doc["skipped_count"] == 0
