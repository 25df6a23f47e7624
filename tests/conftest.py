"""Shared fixtures: the committed Omniglot fixture, a small trained model registered once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qdrant_compat import CompatClient, InputSpec, Registry
from qdrant_compat.cli.main import cli
from qdrant_compat.data import load_npz, write_image_folder

# commands that cache vectors (train, evaluate, converter fit) write to a throw-away folder, never ~/.cache
os.environ["QDRANT_COMPAT_VECTOR_CACHE"] = tempfile.mkdtemp(prefix="qc-test-vectors-")
ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = ROOT / "examples" / "data" / "omniglot_small.npz"
SPEC = InputSpec(size=28, channels=1, mean=(0.92,), std=(0.27,))
N_CLASSES = 30


def subset(src, n_classes: int):
    s = src.subset(np.flatnonzero(src.labels < n_classes))
    s.classes = src.classes[:n_classes]
    return s


@pytest.fixture(scope="session")
def omni_train():
    return subset(load_npz(OMNIGLOT, "train"), N_CLASSES)


@pytest.fixture(scope="session")
def omni_test():
    return subset(load_npz(OMNIGLOT, "test"), N_CLASSES)


def train_register(registry: Registry, src, tmp: Path, name: str, version: str, *, seed: int = 0, epochs: int = 4,
                   old=None, losses=None, dim: int = 32):
    from qdrant_compat.models import ModelConfig
    from qdrant_compat.training import TrainConfig, TrainingSummary, export_and_register, save_checkpoint, train_model

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, **({"losses": losses} if losses else {}))
    res = train_model(src, ModelConfig(backbone="smallcnn", in_channels=1, dim=dim), cfg, SPEC, old=old)
    summary = TrainingSummary(
        input=SPEC, classes=list(src.classes), history=res.history, seconds=res.seconds,
        parent=old.card.ref if old else None, parent_fingerprint=old.card.fingerprint if old else None,
        relation="bct" if old else None,
    )
    ckpt = save_checkpoint(tmp / f"ckpt-{name}-{version}", res.model, summary)
    card, _ = export_and_register(ckpt, registry, name, version)
    return card, res


@pytest.fixture(scope="session")
def trained(tmp_path_factory, omni_train):
    """(registry, card v1, train result, checkpoint dir) shared by the suite; treat as read-only."""
    tmp = tmp_path_factory.mktemp("world")
    registry = Registry(tmp / "registry")
    card, res = train_register(registry, omni_train, tmp, "omni", "1", seed=0, epochs=4)
    return registry, card, res, tmp / "ckpt-omni-1"


@pytest.fixture(scope="session")
def other_model(trained, omni_train, tmp_path_factory):
    """An independently trained second model (different seed), same registry."""
    registry = trained[0]
    card, _ = train_register(registry, omni_train, tmp_path_factory.mktemp("other"), "omni-indep", "2", seed=5, epochs=1)
    return card


@pytest.fixture()
def client(trained):
    c = CompatClient(location=":memory:", registry=trained[0])
    yield c
    c.close()


@pytest.fixture()
def random_vectors():
    def make(n: int, dim: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)

    return make


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
