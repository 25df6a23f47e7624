"""Fitting heads through the product: the classification term reachable from the CLI, bad options refused."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from qdrant_compat.bridges import classifier_labels, fit_and_register
from qdrant_compat.data import open_source
from qdrant_compat.errors import InvalidArgumentError

from ..conftest import OMNIGLOT


def test_classifier_labels_match_classes_by_name():
    got = classifier_labels(np.array([0, 1, 2, 1]), ["a", "b", "c"], ["c", "a"])
    assert got.tolist() == [1, -1, 0, -1]


def test_mlp_class_term_through_the_cli(make_world, other_model):
    tmp, run = make_world(5)
    out = json.loads(run("--json", "converter", "fit", str(OMNIGLOT), "--max-classes", "10", "--source", "omni@1",
                         "--target", "omni-indep@2", "--kind", "mlp", "--option", "class_weight=0.5",
                         "--option", "epochs=2", "--option", "hidden=32", "--id", "cls").output)
    n_pairs = len(open_source(OMNIGLOT, split="train", max_classes=10))
    # every class of the data is one of omni-indep@2's classes (matched by name): every pair gets the term
    assert out["fit"]["class_term"] == {"classifier": "omni-indep@2", "pairs_with_known_class": n_pairs}
    plain = json.loads(run("--json", "converter", "fit", str(OMNIGLOT), "--max-classes", "10", "--source", "omni@1",
                           "--target", "omni-indep@2", "--kind", "mlp", "--option", "epochs=2", "--option", "hidden=32",
                           "--id", "plain").output)
    assert "class_term" not in plain["fit"]


@pytest.mark.parametrize("option, message", [
    ("class_weight=0.5", r"converter kind 'linear' has no option\(s\) \['class_weight'\]; allowed: \['alpha'\]"),
    ("bogus=1", r"has no option\(s\) \['bogus'\]"),
])
def test_unknown_or_ineffective_options_are_errors(make_world, other_model, option, message):
    tmp, run = make_world(5)
    res = run("converter", "fit", str(OMNIGLOT), "--max-classes", "5", "--source", "omni@1", "--target", "omni-indep@2",
              "--kind", "linear", "--option", option, ok=False)
    assert res.exit_code == 1
    assert re.search(message, res.output), res.output


def test_class_term_needs_labels(trained, other_model):
    registry = trained[0]
    rng = np.random.default_rng(0)
    src, dst = rng.normal(size=(100, 32)), rng.normal(size=(100, 32))
    with pytest.raises(InvalidArgumentError, match="option class_weight needs labelled pairs"):
        fit_and_register(registry, "omni@1", "omni-indep@2", "mlp", src=src, dst=dst, conv_id="x",
                         options={"class_weight": 0.5})


@pytest.mark.parametrize("kind, options", [("linear", {}), ("mlp", {"hidden": 32, "epochs": 3, "class_weight": 0.5})])
def test_fit_head_is_the_same_fit_as_the_converter_itself(kind, options):
    """The benchmark moved from calling the heads directly to ``fit_head``: with no hold-out the fit is the
    same, bit for bit, so the P1 figures could only move with their inputs."""
    from converters import create_converter
    from qdrant_compat.bridges import fit_head

    rng = np.random.default_rng(0)
    src, dst = rng.normal(size=(300, 16)), rng.normal(size=(300, 12))
    labels, w = rng.integers(0, 5, size=300), rng.normal(size=(5, 12)).astype(np.float32)
    direct = create_converter(kind, dim_in=16, dim_out=12, **options)
    direct.fit(src, dst, seed=3, labels=labels, target_classifier=w)
    via, _ = fit_head(kind, src, dst, labels=labels, target_classifier=w, seed=3, options=options, holdout=0.0)
    probe = rng.normal(size=(20, 16))
    assert np.array_equal(direct.transform(probe), via.transform(probe))
