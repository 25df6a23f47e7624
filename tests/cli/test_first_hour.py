"""The frictions a newcomer meets first: help on every option, env vars, one line on stderr, readable results."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from qdrant_compat.cli.main import cli


def _commands(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), [*path, name])


def test_every_command_and_option_has_help():
    missing = [(" ".join(p), o.opts[0]) for p, c in _commands(cli, ["qdrant-compat"]) for o in c.params
               if isinstance(o, click.Option) and not o.help]
    undocumented = [" ".join(p) for p, c in _commands(cli, ["qdrant-compat"]) if not c.help]
    assert not missing and not undocumented, (missing, undocumented)


def test_help_names_the_environment_variables_and_the_layouts():
    out = CliRunner().invoke(cli, ["--help"]).output
    assert "QDRANT_COMPAT_PATH" in out and "QDRANT_COMPAT_REGISTRY" in out and "QDRANT_URL" in out
    assert "blue-green" in CliRunner().invoke(cli, ["upgrade", "--help"]).output
    assert "--model" in CliRunner().invoke(cli, ["collection", "create", "--help"]).output.split("Options")[0]


def test_path_and_registry_from_the_environment(make_world, monkeypatch):
    tmp, run = make_world(6)
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    monkeypatch.setenv("QDRANT_COMPAT_PATH", str(tmp / "store"))
    monkeypatch.setenv("QDRANT_COMPAT_REGISTRY", str(tmp / "reg"))
    res = CliRunner().invoke(cli, ["--json", "collection", "info", "g"])
    assert res.exit_code == 0 and json.loads(res.output)["points"] == 30


def test_a_missing_registry_names_the_option_and_the_variable(tmp_path):
    res = CliRunner().invoke(cli, ["--registry", str(tmp_path / "nope"), "model", "inspect", "m@1"])
    assert res.exit_code == 1
    assert "--registry" in res.output and "QDRANT_COMPAT_REGISTRY" in res.output


@pytest.mark.parametrize("args", [["train", "x.npz", "--epochs", "0"], ["search", "x.png", "-k", "0"],
                                  ["upgrade", "run", "c", "--strategy", "nonsense"], ["collection", "nosuch"],
                                  ["upgrade", "cutover", "c", "--grace", "nan"], ["train", "x.npz", "--lr", "inf"],
                                  ["upgrade", "run", "c", "--lock-ttl", "0"]])
def test_usage_errors_exit_2(tmp_path, args):
    (tmp_path / "x.npz").write_bytes(b"")
    (tmp_path / "x.png").write_bytes(b"")
    res = CliRunner().invoke(cli, args if args[0] != "train" and args[0] != "search" else
                             [args[0], str(tmp_path / args[1]), *args[2:]])
    assert res.exit_code == 2, res.output


def test_an_unreachable_server_is_one_line_on_stderr():
    """qdrant-client's own version check prints a UserWarning from a thread; it must not precede the one line."""
    res = subprocess.run([sys.executable, "-m", "qdrant_compat.cli.main", "--url", "http://127.0.0.1:9", "collection",
                          "info", "x"], capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot reach"), res.stderr


@pytest.mark.parametrize("verbose", [0, 1])
def test_library_warnings_show_with_v_only(verbose):
    code = ("from qdrant_compat.cli.context import setup_logging; import warnings; "
            f"setup_logging({verbose}); warnings.warn('a library warning', UserWarning)")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stderr
    assert ("a library warning" in err) == bool(verbose), err


def test_json_timestamps_are_iso_8601(other_model, make_world):
    tmp, run = make_world(6)
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    run("upgrade", "run", "g", "--to", "omni-indep@2", "--strategy", "backfill")
    job = json.loads(run("--json", "upgrade", "status", "g").output)["job"]
    for key in ("created", "updated"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job[key]), job[key]


def _state(**kw):
    from qdrant_compat.cli.context import CliState

    return CliState(path=None, url=None, api_key=None, registry_root=None, json=kw.get("json", False),
                    show_progress=kw.get("show", True))


def test_progress_in_a_pipe_is_a_line_every_few_seconds(capsys):
    with _state().progress("upgrading", 200, every_s=0) as bar:
        bar(50, 200)
        bar(200, 200)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("upgrading: 50/200 points (25%)") and err[-1].startswith("upgrading: 200/200 points (100%)")


@pytest.mark.parametrize("kw", [{"show": False}, {"json": True}, {}])
def test_no_progress_json_or_a_step_that_reports_nothing_print_nothing(capsys, kw):
    with _state(**kw).progress("upgrading", 200, every_s=0) as bar:
        if kw:
            bar(100, 200)
    assert capsys.readouterr().err == ""


def test_json_on_failure_is_a_document_on_stdout(tmp_path):
    res = CliRunner().invoke(cli, ["--json", "--registry", str(tmp_path / "nope"), "model", "inspect", "m@1"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 1 and "not in registry" in doc["error"]
