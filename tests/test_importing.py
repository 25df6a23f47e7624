"""Models trained elsewhere: ONNX files with their own input/output names, torchvision weights files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdrant_compat import Registry
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.importing import import_onnx, import_torchvision
from qdrant_compat.runtime.embedder import Embedder


class Tiny(torch.nn.Module):
    def __init__(self, dim: int = 24, nan: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.lin = torch.nn.Linear(8, dim)
        self.nan = nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return y * float("nan") if self.nan else y


def _export(module: torch.nn.Module, path, size: int = 32, dynamic_size: bool = False) -> None:
    """A plain torch.onnx.export, as another team would do it: its own tensor names."""
    axes = {"pixels": {0: "n", 2: "h", 3: "w"} if dynamic_size else {0: "n"}, "feats": {0: "n"}}
    torch.onnx.export(module.eval(), (torch.zeros(1, 3, size, size),), str(path), input_names=["pixels"],
                      output_names=["feats"], dynamic_axes=axes, dynamo=False)


def test_import_onnx_reads_the_graph_and_embeds(tmp_path):
    _export(Tiny(), tmp_path / "m.onnx")
    reg = Registry(tmp_path / "reg")
    card = import_onnx(reg, tmp_path / "m.onnx", "theirs", "1", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert card.dim == 24 and card.input.size == 32 and card.input.channels == 3 and card.input.mean == (0.5, 0.5, 0.5)
    assert card.training["imported"]["from"] == "onnx" and len(card.training["imported"]["sha256"]) == 64
    img = np.random.default_rng(0).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)  # the graph's size: no resize
    vec = Embedder(reg.get_model("theirs@1")).embed([img])  # its input/output names are not ours
    x = (torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None] - 0.5) / 0.25
    with torch.no_grad():
        ref = Tiny()(x).numpy()
    assert np.allclose(vec, ref, atol=1e-4)


def test_import_onnx_refuses_nan_output_and_contradicting_flags(tmp_path):
    _export(Tiny(nan=True), tmp_path / "nan.onnx")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(InvalidArgumentError, match="produced NaN or infinity on a probe batch: not imported"):
        import_onnx(reg, tmp_path / "nan.onnx", "bad", "1")
    _export(Tiny(), tmp_path / "m.onnx")
    with pytest.raises(InvalidArgumentError, match="--size 64 contradicts m.onnx, whose graph fixes size to 32"):
        import_onnx(reg, tmp_path / "m.onnx", "bad", "2", size=64)
    _export(Tiny(), tmp_path / "dyn.onnx", dynamic_size=True)
    with pytest.raises(InvalidArgumentError, match="does not fix its input size .* pass --size"):
        import_onnx(reg, tmp_path / "dyn.onnx", "bad", "3")
    assert import_onnx(reg, tmp_path / "dyn.onnx", "ok", "1", size=48).input.size == 48
    assert [c.ref for c in reg.list_models()] == ["ok@1"]  # nothing half-registered


@pytest.mark.parametrize("std", [(0.0, 0.2, 0.2), (float("nan"),) * 3, (-1.0, 0.2, 0.2)])
def test_import_refuses_a_std_that_would_break_every_embedding(tmp_path, std):
    """--std 0 used to be accepted, and then every image embedded to NaN ('index' said "indexed 0 images")."""
    _export(Tiny(), tmp_path / "m.onnx")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(InvalidArgumentError, match="needs finite means and std > 0"):
        import_onnx(reg, tmp_path / "m.onnx", "theirs", "1", mean=(0.5, 0.5, 0.5), std=std)
    assert reg.list_models() == []


def test_a_card_dimension_beyond_qdrants_is_refused():
    from qdrant_compat.cards import InputSpec, ModelCard

    with pytest.raises(InvalidArgumentError, match="model dim must be 1..65536"):
        ModelCard(name="m", version="1", dim=70_000, input=InputSpec(size=32))


def test_import_torchvision_from_a_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    reg = Registry(tmp_path / "reg")
    card = import_torchvision(reg, "mobilenet_v3_small", tmp_path / "w.pt", "mnv3", "1", size=64)
    assert card.dim == 576 and card.training["imported"]["arch"] == "mobilenet_v3_small"
    img = np.random.default_rng(1).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    vec = Embedder(reg.get_model("mnv3@1")).embed([img])
    net.classifier = torch.nn.Identity()
    x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net.eval()((x - mean) / std).numpy()
    assert np.allclose(vec, ref, atol=1e-3)
    with pytest.raises(InvalidArgumentError, match="is not a state dict of resnet18"):
        import_torchvision(reg, "resnet18", tmp_path / "w.pt", "r", "1", size=64)


def test_import_timm_from_a_local_safetensors_file(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is an optional extra (installed by the dev extra)")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, in_chans=1, num_classes=7)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    reg = Registry(tmp_path / "reg")
    card = import_torchvision(reg, "timm:test_resnet", tmp_path / "w.safetensors", "tr", "1", size=28, channels=1,
                              mean=(0.5,), std=(0.25,))
    assert card.dim == net.num_features and card.training["imported"]["from"] == "timm"
    img = np.random.default_rng(2).integers(0, 255, size=(28, 28), dtype=np.uint8)
    vec = Embedder(reg.get_model("tr@1")).embed([img])
    net.reset_classifier(0)
    x = (torch.from_numpy(np.asarray(img, np.float32) / 255.0)[None, None] - 0.5) / 0.25
    with torch.no_grad():
        ref = net.eval()(x).numpy()
    assert np.allclose(vec, ref, atol=1e-3)
    with pytest.raises(InvalidArgumentError, match="unknown timm architecture 'no_such_net'"):
        import_torchvision(reg, "timm:no_such_net", tmp_path / "w.safetensors", "x", "1", size=28, channels=1)


def test_model_import_cli(make_world, tmp_path):
    tmp, run = make_world(2)
    _export(Tiny(), tmp_path / "m.onnx")
    out = json.loads(run("--json", "model", "import", str(tmp_path / "m.onnx"), "--name", "cli", "--version", "1").output)
    assert out["dim"] == 24 and out["input"]["size"] == 32
    res = run("model", "import", str(tmp_path / "m.onnx"), "--name", "cli", "--version", "2", "--layer", "x", ok=False)
    assert res.exit_code == 1 and "--layer goes with --arch" in res.output


def test_an_onnx_with_external_data_is_refused_with_how_to_make_one_file(tmp_path):
    """The registry copies model.onnx alone: weights kept in a file beside it would be left behind, and the
    registered model would not load (#20, finding 10)."""
    import onnx

    _export(Tiny(), tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    (tmp_path / "ext").mkdir()
    onnx.save(proto, str(tmp_path / "ext" / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "ext" / "m.onnx.data").is_file()
    reg = Registry(tmp_path / "reg")
    with pytest.raises(InvalidArgumentError, match=r"keeps its weights in files beside it .*save_as_external_data=False"):
        import_onnx(reg, tmp_path / "ext" / "m.onnx", "ext", "1")
    assert reg.list_models() == []


def test_reimporting_the_same_bytes_with_other_preprocessing_is_refused(tmp_path):
    """Same ONNX bytes, another --mean: silently keeping the first card would embed with the wrong
    normalisation; it is another model, so it needs another version (#20, finding 10)."""
    _export(Tiny(), tmp_path / "m.onnx")
    reg = Registry(tmp_path / "reg")
    first = import_onnx(reg, tmp_path / "m.onnx", "theirs", "1", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    again = import_onnx(reg, tmp_path / "m.onnx", "theirs", "1", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert again.fingerprint == first.fingerprint  # the same import twice is fine
    with pytest.raises(InvalidArgumentError, match=r"theirs@1 is already registered with input mean \(0.5, 0.5, 0.5\).*"
                                                   r"mean \(0.4, 0.4, 0.4\).*new version"):
        import_onnx(reg, tmp_path / "m.onnx", "theirs", "1", mean=(0.4, 0.4, 0.4), std=(0.25, 0.25, 0.25))
    assert reg.get_model("theirs@1").card.input.mean == (0.5, 0.5, 0.5)
