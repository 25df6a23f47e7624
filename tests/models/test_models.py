"""Forward/backward smoke per backbone family, and save -> load round trips."""

from __future__ import annotations

import pytest
import torch

from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError
from qdrant_compat.models import EmbeddingModel, ModelConfig, create_backbone


@pytest.mark.parametrize("backbone,channels,size", [("smallcnn", 1, 28), ("resnet18", 3, 32), ("resnet18", 1, 32)])
def test_forward_backward_every_parameter_gets_a_gradient(backbone, channels, size):
    torch.manual_seed(0)
    m = EmbeddingModel(ModelConfig(backbone=backbone, in_channels=channels, dim=16, num_classes=3), pretrained=False)
    m.train()
    emb = m(torch.randn(4, channels, size, size))
    assert emb.shape == (4, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    loss = m.classifier(emb).logsumexp(1).mean()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_frozen_backbone_stays_frozen_and_in_eval():
    m = EmbeddingModel(ModelConfig(backbone="smallcnn", in_channels=1, dim=8, num_classes=2, freeze_backbone=True))
    m.train()
    assert not m.backbone.training
    assert all(not p.requires_grad for p in m.backbone.parameters())


def test_save_load_roundtrip_equal(tmp_path):
    torch.manual_seed(1)
    m = EmbeddingModel(ModelConfig(backbone="smallcnn", in_channels=1, dim=8, num_classes=5)).eval()
    m.save(tmp_path / "m")
    m2 = EmbeddingModel.load(tmp_path / "m")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_load_rejects_weights_that_do_not_fit(tmp_path):
    EmbeddingModel(ModelConfig(backbone="smallcnn", in_channels=1, dim=8, num_classes=5)).save(tmp_path / "a")
    EmbeddingModel(ModelConfig(backbone="smallcnn", in_channels=1, dim=16, num_classes=5)).save(tmp_path / "b")
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(CorruptArtifactError, match="does not fit the saved config"):
        EmbeddingModel.load(tmp_path / "a")


def test_load_of_a_non_checkpoint_is_clear(tmp_path):
    with pytest.raises(CorruptArtifactError, match="config.json is missing"):
        EmbeddingModel.load(tmp_path)


def test_unknown_backbone_lists_choices():
    with pytest.raises(InvalidArgumentError, match=r"unknown backbone 'resnet9000'.*smallcnn"):
        create_backbone("resnet9000")


def test_local_weights_load_without_unpickling(tmp_path):
    from safetensors.torch import save_file

    src = create_backbone("smallcnn", in_channels=1)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        b = create_backbone("smallcnn", in_channels=1, weights=str(tmp_path / f))
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in src.state_dict().items())
