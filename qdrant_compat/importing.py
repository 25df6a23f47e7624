"""Bring a model trained elsewhere into the registry: an ONNX file, or a torchvision architecture with a
local weights file (exported to ONNX here, parity-checked). Nothing is downloaded.

The card records where the model came from (file, sha256, architecture, layer), and registration runs the
graph on a probe batch: the output dimension is read from it and must be finite.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.cards import InputSpec, ModelCard, sha256_file
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.registry import Registry, probe_output

log = logging.getLogger(__name__)
DEFAULT_MEAN = {1: (0.5,), 3: (0.485, 0.456, 0.406)}
DEFAULT_STD = {1: (0.5,), 3: (0.229, 0.224, 0.225)}


def _graph_input(path: Path) -> tuple[Any, list[Any]]:
    from qdrant_compat.runtime.onnx import ort_session

    sess = ort_session(path, ["CPUExecutionProvider"])
    return sess, list(sess.get_inputs()[0].shape)


def input_spec_for(path: str | Path, *, size: int | None = None, channels: int | None = None,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> InputSpec:
    """The input spec of an ONNX image model: channels and size from the graph where it fixes them, else the
    flags; a flag that contradicts the graph is an error naming both."""
    _, shape = _graph_input(Path(path))
    if len(shape) != 4:
        raise InvalidArgumentError(f"{path} takes a rank-{len(shape)} input {shape}; an image model takes (n, C, H, W)")
    fixed_c, fixed_h, fixed_w = (d if isinstance(d, int) else None for d in shape[1:])
    if fixed_h is not None and fixed_w is not None and fixed_h != fixed_w:
        raise InvalidArgumentError(f"{path} takes {fixed_h}x{fixed_w} inputs; only square inputs are supported")
    for what, flag, fixed in (("channels", channels, fixed_c), ("size", size, fixed_h)):
        if flag is not None and fixed is not None and flag != fixed:
            raise InvalidArgumentError(f"--{what} {flag} contradicts {Path(path).name}, whose graph fixes {what} to {fixed}")
    c = channels or fixed_c
    s = size or fixed_h
    if c is None or s is None:
        raise InvalidArgumentError(f"{Path(path).name} does not fix its input {'channels' if c is None else 'size'} "
                                   f"(graph input {shape}); pass --{'channels' if c is None else 'size'}")
    return InputSpec(size=int(s), channels=int(c), mean=tuple(mean or DEFAULT_MEAN[int(c)]),
                     std=tuple(std or DEFAULT_STD[int(c)]))


def probe_dim(path: str | Path, spec: InputSpec) -> int:
    """Run the graph on a random batch of the spec's shape; the output must be ``(n, dim)`` and finite."""
    sess, _ = _graph_input(Path(path))
    out = probe_output(sess, [2, spec.channels, spec.size, spec.size], Path(path).name, "imported")
    if out.ndim != 2 or out.shape[0] != 2:
        raise InvalidArgumentError(f"{Path(path).name} outputs shape {out.shape} for a batch of 2; an embedding model "
                                   "outputs (n, dim)")
    return int(out.shape[1])


def read_classifier(path: str | Path, dim: int) -> tuple[np.ndarray, list[str]]:
    """A team's classifier for an imported model: an ``.npz`` with ``weight`` ``(n_classes, dim)`` and ``classes``
    ``(n_classes,)`` (the class names, matched by name against the training data's classes).

    Raises:
        InvalidArgumentError: missing keys, wrong shape, non-finite rows, or duplicate class names.
    """
    p = Path(path)
    try:
        z = np.load(p, allow_pickle=False)
        weight, classes = np.asarray(z["weight"], dtype=np.float32), [str(c) for c in z["classes"]]
    except KeyError as exc:
        raise InvalidArgumentError(f"classifier file {p} needs arrays 'weight' (n_classes, dim) and 'classes' (names); "
                                   f"missing {exc}") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"classifier file {p} is not a readable .npz ({exc})") from None
    if weight.ndim != 2 or weight.shape[1] != dim or len(classes) != len(weight):
        raise InvalidArgumentError(f"classifier {p}: weight must be ({len(classes)}, {dim}) for {len(classes)} class names "
                                   f"and a {dim}-d model, got {weight.shape}")
    if not np.isfinite(weight).all() or (np.linalg.norm(weight, axis=1) == 0).any():
        raise InvalidArgumentError(f"classifier {p} has non-finite or all-zero rows")
    if len(set(classes)) != len(classes):
        raise InvalidArgumentError(f"classifier {p} names a class twice; class names must be unique")
    return weight, classes


def import_onnx(registry: Registry, path: str | Path, name: str, version: str, *, size: int | None = None,
                channels: int | None = None, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                distance: str = "Cosine", provenance: dict[str, Any] | None = None,
                classifier: str | Path | None = None) -> ModelCard:
    """Register an ONNX feature extractor trained elsewhere (its card records where it came from).

    ``classifier``: the team's classifier (:func:`read_classifier`); compatible training then keeps its rows for
    the classes it names instead of synthesising every row.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"ONNX file {path} does not exist")
    spec = input_spec_for(path, size=size, channels=channels, mean=mean, std=std)
    dim = probe_dim(path, spec)
    weight, classes = read_classifier(classifier, dim) if classifier is not None else (None, [])
    origin = provenance or {"from": "onnx", "file": path.name, "sha256": sha256_file(path)}
    if classifier is not None:
        origin = {**origin, "classifier": Path(classifier).name, "classifier_sha256": sha256_file(classifier)}
    card = ModelCard(name=name, version=version, dim=dim, input=spec, distance=distance, training={"imported": origin},
                     classes=classes)
    card = registry.register_model(path, card, classifier=weight)
    log.info("imported %s as %s (%d-d, input %dx%d, %d channel(s))", path, card.ref, dim, spec.size, spec.size, spec.channels)
    return card


def _torchvision_model(torchvision: Any, arch: str) -> Any:
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise InvalidArgumentError(f"unknown torchvision architecture {arch!r} (e.g. resnet18, mobilenet_v3_small; "
                                   "timm architectures as timm:NAME)")
    return torchvision.models.get_model(arch, weights=None)


def _timm_model(name: str, channels: int) -> Any:
    """A timm architecture, randomly initialised (nothing downloaded: ``pretrained=False``); needs the ``timm`` extra."""
    from qdrant_compat.models.backbones import TimmBackbone

    return TimmBackbone(name, channels).net


def import_torchvision(registry: Registry, arch: str, weights: str | Path, name: str, version: str, *, size: int,
                       channels: int = 3, layer: str | None = None, mean: tuple[float, ...] | None = None,
                       std: tuple[float, ...] | None = None, distance: str = "Cosine",
                       classifier: str | Path | None = None) -> ModelCard:
    """A torchvision classification architecture (or a timm one, ``arch="timm:NAME"``, with the ``timm`` extra)
    with a local state dict (safetensors, or a torch file read with ``weights_only=True``); the embedding is the
    pooled features (the classifier removed) or the flattened output of ``layer``. Exported to ONNX
    (parity-checked), then registered like :func:`import_onnx`. Needs the ``train`` extra."""
    from qdrant_compat.errors import require_torch

    require_torch("'model import --arch'")
    import torch
    import torchvision

    from qdrant_compat.export import export_module
    from qdrant_compat.models.backbones import load_state_dict_file, load_without_head

    library = "timm" if arch.startswith("timm:") else "torchvision"
    net = _timm_model(arch[5:], channels) if library == "timm" else _torchvision_model(torchvision, arch)
    state = load_state_dict_file(weights)
    try:
        if library == "timm":
            load_without_head(net, state)
        else:
            net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InvalidArgumentError(f"{weights} is not a state dict of {arch} ({' '.join(lines[:2])[:300]})") from None
    if layer is None and library == "timm":
        module: torch.nn.Module = net  # made with num_classes=0: the pooled features
    elif layer is None:
        for head in ("fc", "classifier", "heads", "head"):
            if hasattr(net, head):
                setattr(net, head, torch.nn.Identity())
                break
        else:
            raise InvalidArgumentError(f"{arch}: no classifier attribute to remove; name the embedding layer with --layer")
        module = net
    else:
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        nodes = get_graph_node_names(net)[1]
        if layer not in nodes:
            raise InvalidArgumentError(f"{arch} has no layer {layer!r}; layers include {nodes[-8:]}")
        extractor = create_feature_extractor(net, {layer: "emb"})

        class _Flat(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = extractor

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.flatten(self.inner(x)["emb"], 1)

        module = _Flat()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_module(module.eval(), (1, channels, size, size), onnx_path,
                      metadata={"qdrant_compat.name": name, "qdrant_compat.version": version})
        origin = {"from": library, "arch": arch, "layer": layer or "pooled features",
                  "weights": Path(weights).name, "weights_sha256": sha256_file(weights)}
        return import_onnx(registry, onnx_path, name, version, size=size, channels=channels, mean=mean, std=std,
                           distance=distance, provenance=origin, classifier=classifier)
