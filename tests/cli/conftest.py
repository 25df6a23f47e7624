from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from qdrant_compat.cli.main import cli
from qdrant_compat.data import load_npz, write_image_folder

from ..conftest import OMNIGLOT


@pytest.fixture()
def make_world(tmp_path, trained):
    """``make_world(n_classes)`` -> (tmp, run): a registry copy, a gallery folder, and a CLI runner on an
    embedded store in ``tmp``; ``run(*args, ok=True)`` asserts exit code 0 unless ``ok=False``."""

    def make(n_classes: int):
        shutil.copytree(trained[0].root, tmp_path / "reg")
        src = load_npz(OMNIGLOT, "test")
        write_image_folder(src, tmp_path / "gallery", np.flatnonzero(src.labels < n_classes))
        base = ["--path", str(tmp_path / "store"), "--registry", str(tmp_path / "reg"), "--no-progress"]

        def run(*args, ok=True):
            res = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
            if ok:
                assert res.exit_code == 0, res.output
            return res

        return tmp_path, run

    return make
