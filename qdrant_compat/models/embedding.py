"""Embedding model = backbone + embedding head (L2-normalised output) and a cosine classifier."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qdrant_compat._config import from_dict
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError
from qdrant_compat.models.backbones import create_backbone

FORMAT_VERSION = 1
HEAD_KINDS = ("linear", "mlp")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "smallcnn"
    dim: int = 128
    head: str = "mlp"
    hidden: int = 512
    in_channels: int = 3
    num_classes: int = 0
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise InvalidArgumentError(f"head {self.head!r} unknown; allowed: {list(HEAD_KINDS)}")
        if self.dim <= 0:
            raise InvalidArgumentError(f"embedding dim must be positive, got {self.dim}")


class EmbeddingHead(nn.Module):
    def __init__(self, in_dim: int, dim: int, kind: str = "mlp", hidden: int = 512) -> None:
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, dim)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class CosineClassifier(nn.Module):
    """``logits = scale * cos(e, w_c)``; rows are kept with the model for later backward-compatible training."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).t()


class EmbeddingModel(nn.Module):
    """Image tensor -> L2-normalised embedding.

    Example:
        >>> m = EmbeddingModel(ModelConfig(backbone="smallcnn", in_channels=1, dim=64, num_classes=10), pretrained=False)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 64])
    """

    def __init__(self, config: ModelConfig, *, pretrained: bool = True, weights: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = create_backbone(
            config.backbone, in_channels=config.in_channels, weights=weights, pretrained=pretrained
        )
        self.head = EmbeddingHead(int(self.backbone.out_dim), config.dim, config.head, config.hidden)  # type: ignore[arg-type]
        self.classifier = CosineClassifier(config.dim, max(config.num_classes, 1))
        if config.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()  # frozen BN statistics stay frozen
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed_features(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(f), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.backbone(x))

    # ------------------------------------------------------------ save/load
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (no pickle anywhere)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(
            json.dumps({"format_version": FORMAT_VERSION, "type": "EmbeddingModel", "config": asdict(self.config)}, indent=2)
        )
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingModel:
        """Rebuild from :meth:`save` output; weights load strictly.

        Raises:
            CorruptArtifactError: missing/invalid config or weights that do not fit the architecture.
        """
        from safetensors.torch import load_file

        from qdrant_compat._config import read_json

        d = Path(directory)
        meta = read_json(d / "config.json", f"{d} is not a saved model: config.json is missing")
        if meta.get("type") != "EmbeddingModel" or meta.get("format_version") != FORMAT_VERSION:
            raise CorruptArtifactError(
                f"{d / 'config.json'}: expected type EmbeddingModel format {FORMAT_VERSION}, "
                f"got {meta.get('type')!r} format {meta.get('format_version')!r}"
            )
        config = from_dict(ModelConfig, meta["config"], where=str(d / "config.json"))
        model = cls(config, pretrained=False)
        try:
            state = load_file(str(d / "model.safetensors"))
            model.load_state_dict(state, strict=True)
        except FileNotFoundError:
            raise CorruptArtifactError(f"{d} has no model.safetensors") from None
        except (RuntimeError, OSError, Exception) as exc:
            raise CorruptArtifactError(f"{d / 'model.safetensors'} does not fit the saved config ({exc})") from None
        model.eval()
        return model
