"""The figures `converter fit` prints are the figures a user measures: on an evaluation set they equal
`evaluate --adapter`'s cell, and the held-out figure says what it was measured on."""

from __future__ import annotations

import json

import pytest

from ..conftest import OMNIGLOT


def test_converter_fit_figures_equal_what_evaluate_measures(other_model, make_world):
    tmp, run = make_world(30)
    data = ["--max-classes", "30"]
    res = run("--json", "converter", "fit", str(OMNIGLOT), *data, "--source", "omni@1", "--target", other_model.ref,
              "--kind", "linear", "--eval-data", str(OMNIGLOT), "--eval-split", "test")
    card = json.loads(res.output)
    ev, ho = card["fit"]["eval"], card["fit"]["holdout"]
    assert ev["measured_on"].startswith("150 images of 30 classes of the evaluation set")
    assert ho["measured_on"].startswith("60 held-out pairs of 30 classes")  # 2 of each class's 15 training images
    cells = json.loads(run("--json", "evaluate", str(OMNIGLOT), "--split", "test", *data, "--model", "omni@1",
                           "--model", other_model.ref, "--adapter", card["id"]).output)["cells"]
    cell = cells[f"{other_model.ref}/convert:linear(omni@1)"]
    assert ev["top1"] == pytest.approx(cell["top1"]) and ev["mAP"] == pytest.approx(cell["mAP"])
    assert ev["base_top1"] == pytest.approx(cells[f"{other_model.ref}/{other_model.ref}"]["top1"])
    human = run("converter", "fit", str(OMNIGLOT), *data, "--source", "omni@1", "--target", other_model.ref, "--kind",
                "linear", "--id", "again", "--eval-data", str(OMNIGLOT), "--eval-split", "test").output
    assert f"evaluation set: {other_model.ref}/convert(omni@1) top-1 {ev['top1']:.1f} vs" in human
