"""The training loop: a task (new model + loss, and the frozen old model's targets) and a plain loop.

When the backbone is frozen, its features are computed once and the loop trains the head and the
classifier on them: the same result as running the backbone every step, at a fraction of the cost.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qdrant_compat.cards import InputSpec
from qdrant_compat.data.transforms import preprocess
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses.base import CompositeLoss, LossInputs, create_loss
from qdrant_compat.models.embedding import EmbeddingModel, ModelConfig
from qdrant_compat.training.config import TrainConfig, resolve_device
from qdrant_compat.training.old_model import OldTargets

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    model: EmbeddingModel
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    feature_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_loss(cfg: TrainConfig) -> CompositeLoss:
    return CompositeLoss(
        {name: (w, create_loss(name, **cfg.loss_options.get(name, {}))) for name, w in cfg.losses.items() if w != 0}
    )


@torch.no_grad()
def compute_features(
    model: EmbeddingModel, source: Any, spec: InputSpec, *, batch_size: int = 128, device: str = "cpu",
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Backbone features of every image of ``source`` ``(n, out_dim)``, on the CPU."""
    model.eval().to(device)
    out = []
    n = len(source)
    for s in range(0, n, batch_size):
        x = preprocess([source.get(i) for i in range(s, min(n, s + batch_size))], spec)
        out.append(model.features(torch.from_numpy(x).to(device)).cpu())
        if progress:
            progress(min(n, s + batch_size), n)
    return torch.cat(out)


def materialize(source: Any, spec: InputSpec, batch_size: int = 512) -> torch.Tensor:
    n = len(source)
    x = torch.empty((n, spec.channels, spec.size, spec.size), dtype=torch.float32)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        x[s:e] = torch.from_numpy(preprocess([source.get(i) for i in range(s, e)], spec))
    return x


def fit(
    model: EmbeddingModel,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    *,
    features: bool,
    old: OldTargets | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochHook | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``inputs`` (images, or backbone features when ``features``)."""
    device = resolve_device(cfg.device)
    loss_fn = build_loss(cfg)
    if loss_fn.needs_old and old is None:
        raise InvalidArgumentError(
            f"losses {sorted(cfg.losses)} need an old model; pass old_model (CLI: --old-model NAME@VERSION)"
        )
    model.to(device)
    old_emb = old_w = seen_cls = None
    if old is not None:
        old_emb = torch.from_numpy(old.embeddings)
        synth = set(old.synthesized)
        classes = getattr(old, "classes", None)
        seen_cls = torch.tensor([c not in synth for c in classes]) if classes else None
        old_w = torch.from_numpy(old.weight).to(device)
        if len(old_emb) != len(inputs):
            raise InvalidArgumentError(f"old embeddings cover {len(old_emb)} images, training has {len(inputs)}")
    head_params = list(model.head.parameters()) + list(model.classifier.parameters())
    groups: list[dict[str, Any]] = [{"params": head_params, "lr": cfg.lr}]
    if not features and not model.config.freeze_backbone:
        groups.append({"params": list(model.backbone.parameters()), "lr": cfg.backbone_lr or cfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    n = len(inputs)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        correct = seen = 0
        t0 = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = inputs[idx].to(device, non_blocking=True)
            yb = labels[idx].to(device)
            if cfg.hflip and not features:
                flip = torch.rand(len(xb), generator=gen) < 0.5
                xb[flip.to(device)] = xb[flip.to(device)].flip(-1)
            feat = xb if features else model.backbone(xb)
            emb = model.embed_features(feat)
            cos = model.classifier(emb)
            li = LossInputs(
                emb=emb, labels=yb, cos=cos,
                old_emb=None if old_emb is None else old_emb[idx].to(device), old_weight=old_w, feat=feat.detach(),
            )
            if seen_cls is not None:
                li.seen_mask = seen_cls.to(device)[yb]
            if old_emb is not None and cfg.bank_size > 0:
                bank = torch.randint(0, n, (cfg.bank_size,), generator=gen)
                li.bank_emb, li.bank_labels = old_emb[bank].to(device), labels[bank].to(device)
            loss, parts = loss_fn(li)
            if not torch.isfinite(loss):
                raise InvalidArgumentError(f"training diverged at epoch {epoch + 1} (loss {float(loss)}); lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            correct += int((cos.argmax(1) == yb).sum())
            seen += len(yb)
            if progress:
                progress(step, total)
        row = {k: v / steps_per_epoch for k, v in sums.items()}
        row.update(epoch=epoch + 1, train_acc=correct / max(seen, 1), seconds=time.perf_counter() - t0)
        history.append(row)
        log.info(
            "epoch %d/%d loss %.4f train_acc %.3f (%s) %.1fs", epoch + 1, cfg.epochs, row["loss"], row["train_acc"],
            ", ".join(f"{k} {v:.3f}" for k, v in parts.items()), row["seconds"],
        )
        if on_epoch:
            on_epoch(epoch + 1, row)
    model.eval()
    return history


def train_model(
    source: Any,
    model_config: ModelConfig,
    train_config: TrainConfig,
    spec: InputSpec,
    *,
    old: OldTargets | None = None,
    weights: str | None = None,
    features: torch.Tensor | None = None,
    images: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train an embedding model on a labelled image source.

    Args:
        source: an :class:`~qdrant_compat.data.ImageSource` (image folder, arrays, npz).
        model_config: architecture; ``num_classes`` is taken from ``source`` when 0.
        train_config: optimisation and losses (``BCT_LOSSES`` with ``old`` for compatible training).
        spec: preprocessing, as recorded in the model card.
        old: the frozen old model's targets (:func:`prepare_old_targets`), for compatible training.
        weights: local backbone state dict (nothing is downloaded).
        features: precomputed backbone features for ``source`` (frozen backbone only), e.g. from a cache.
        images: ``source`` already preprocessed ``(n, C, S, S)`` (skips decoding; e.g. kept on a GPU box).

    Returns:
        The trained model (eval mode, on the CPU) and the per-epoch history.
    """
    if train_config.no_labels:  # label-free: the source's labels are never read
        labels_np = np.zeros(len(source), dtype=np.int64)
        num_classes = model_config.num_classes or 1
    else:
        labels_np = np.asarray(source.labels)
        num_classes = model_config.num_classes or len(source.classes)
    if len(labels_np) == 0:
        raise InvalidArgumentError("the training source holds no images")
    if labels_np.max() >= num_classes:
        raise InvalidArgumentError(f"labels go up to {labels_np.max()} but only {num_classes} classes are declared")
    if model_config.in_channels != spec.channels:
        raise InvalidArgumentError(
            f"model in_channels={model_config.in_channels} but the input spec has {spec.channels} channel(s)"
        )
    from dataclasses import replace

    model_config = replace(model_config, num_classes=num_classes)
    seed_everything(train_config.seed)
    model = EmbeddingModel(model_config, weights=weights)
    device = resolve_device(train_config.device)
    t0 = time.perf_counter()
    use_features = model_config.freeze_backbone and not train_config.hflip
    if use_features:
        if features is None:
            features = compute_features(model, source, spec, device=device)
        elif len(features) != len(source):
            raise InvalidArgumentError(f"{len(features)} cached features for {len(source)} images")
        inputs = features
    elif images is not None:
        if tuple(images.shape) != (len(source), spec.channels, spec.size, spec.size):
            raise InvalidArgumentError(
                f"images must have shape ({len(source)}, {spec.channels}, {spec.size}, {spec.size}), got {tuple(images.shape)}"
            )
        inputs = images
    else:
        inputs = materialize(source, spec)
    t_feat = time.perf_counter() - t0
    labels = torch.from_numpy(labels_np.astype(np.int64))
    history = fit(model, inputs, labels, train_config, features=use_features, old=old, progress=progress, on_epoch=on_epoch)
    model.cpu().eval()
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - t0 - t_feat, feature_seconds=t_feat)
