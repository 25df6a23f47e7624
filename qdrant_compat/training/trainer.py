"""The training loop: a task (new model + loss, the frozen old model's targets) and one loop for every input.

Three inputs feed the same loop, chosen once in :func:`train_model`:

* **stream** (the default): a DataLoader whose workers read, decode and augment each step's images from the
  source (folder, npz, image list); memory does not grow with the number of images;
* **features**: a frozen backbone without augmentation is run once over the images (or its features come from
  the vector cache) and the loop trains the head and classifier on them: the same result at a fraction of
  the cost;
* **tensor**: images already preprocessed in memory (``images=``), e.g. kept on a GPU for a benchmark.

The loop runs on CPU or GPU (bf16/fp16 autocast, channels_last, optional ``torch.compile``), under torchrun DDP
(:mod:`~qdrant_compat.training.distributed`), with gradient accumulation, warm-up then cosine decay, and
atomic resume states (:mod:`~qdrant_compat.training.resume`). Step values stay on the device: the host reads
them every ``log_every`` steps (every step on a CPU, where reading costs nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qdrant_compat.cards import InputSpec
from qdrant_compat.data.transforms import preprocess
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses.base import CompositeLoss, LossInputs, create_loss
from qdrant_compat.models.embedding import EmbeddingModel, ModelConfig
from qdrant_compat.training import resume as resume_state
from qdrant_compat.training.config import TrainConfig, resolve_device
from qdrant_compat.training.data import StepSampler, get_augment, make_loader, normalizer, sample_seed
from qdrant_compat.training.distributed import Dist
from qdrant_compat.training.gate import CompatibilityGate, GateConfig, GateResult, split_holdout
from qdrant_compat.training.old_model import OldTargets, SameViewOld

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class StepReport:
    """What a progress display shows: read from the device every ``log_every`` steps."""

    epoch: int
    epochs: int
    step: int
    total: int
    losses: dict[str, float]
    images_per_s: float
    eta_s: float
    skipped: int = 0

    def line(self) -> str:
        terms = " ".join(f"{k} {v:.3f}" for k, v in self.losses.items())
        eta = f"{self.eta_s / 60:.1f} min" if self.eta_s >= 90 else f"{self.eta_s:.0f} s"
        return (f"epoch {self.epoch}/{self.epochs} step {self.step}/{self.total} {terms} "
                f"{self.images_per_s:.0f} img/s ETA {eta}" + (f" ({self.skipped} unreadable skipped)" if self.skipped else ""))


LogHook = Callable[[StepReport], None]


@dataclass
class TrainResult:
    model: EmbeddingModel
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    feature_seconds: float = 0.0
    skipped: dict[int, str] = field(default_factory=dict)  # image index -> why it could not be read
    input_mode: str = "stream"
    images_per_s: float = 0.0
    resumed_from_step: int = 0
    gate: GateResult | None = None  # the compatibility measured while training (with old and a gate)
    adapters: dict[str, Any] = field(default_factory=dict)  # new->old converters trained by loss terms (the predictor)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_loss(cfg: TrainConfig) -> CompositeLoss:
    return CompositeLoss(
        {name: (w, create_loss(name, **cfg.loss_options.get(name, {}))) for name, w in cfg.losses.items() if w != 0}
    )


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names, shapes, bytes): the vector cache's key for its features."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(repr(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def compute_features(
    model: EmbeddingModel, source: Any, spec: InputSpec, *, batch_size: int = 128, device: str = "cpu",
    progress: ProgressFn | None = None, cache: Any = None, workers: int = 0,
) -> torch.Tensor:
    """Backbone features of every image of ``source`` ``(n, out_dim)``, on the CPU (``cache``: a
    :class:`~qdrant_compat.runtime.cache.VectorCache`; unreadable images get NaN rows)."""
    from qdrant_compat.runtime.cache import cached_rows, model_key
    from qdrant_compat.training.data import AUGMENTS, collate

    model.eval().to(device)
    mean, std = normalizer(spec, device)

    def run(idx: list[int]) -> np.ndarray:
        out = np.full((len(idx), int(model.backbone.out_dim)), np.nan, dtype=np.float32)  # type: ignore[arg-type]
        pos = {i: k for k, i in enumerate(idx)}
        batches = [[(i, 0) for i in idx[s : s + batch_size]] for s in range(0, len(idx), batch_size)]
        loader = torch.utils.data.DataLoader(
            _dataset(source, spec, AUGMENTS["none"]), batch_sampler=batches, num_workers=workers, collate_fn=collate)
        done = 0
        for b in loader:
            if len(b["idx"]):
                x = (b["x"].to(device).float() / 255 - mean) / std
                out[[pos[int(i)] for i in b["idx"]]] = model.features(x).float().cpu().numpy()
            done += len(b["idx"]) + len(b["skipped"])
            if progress:
                progress(done, len(idx))
        return out

    mkey = model_key("features", model.config.backbone, weights_digest(model.backbone), spec)
    return torch.from_numpy(cached_rows(cache, mkey, source, range(len(source)), run))


def _dataset(source: Any, spec: InputSpec, augment: Any) -> Any:
    from qdrant_compat.training.data import TrainImages, ViewTransform

    return TrainImages(source, ViewTransform(spec, augment))


def materialize(source: Any, spec: InputSpec, batch_size: int = 512) -> torch.Tensor:
    """Every image preprocessed into one float tensor: the in-memory input (small sets, benchmarks)."""
    n = len(source)
    x = torch.empty((n, spec.channels, spec.size, spec.size), dtype=torch.float32)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        x[s:e] = torch.from_numpy(preprocess([source.get(i) for i in range(s, e)], spec))
    return x


def amp_dtype(amp: str, device: str) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on ``device`` (None: full float32)."""
    cuda = device.startswith("cuda")
    if amp == "off" or (amp == "auto" and not cuda):
        return None
    if amp == "fp16" and not cuda:
        raise InvalidArgumentError("--amp fp16 needs a CUDA device; on a CPU use --amp bf16 or off")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


class TrainStep(nn.Module):
    """One micro-batch: new embeddings (under autocast), gathered over ranks, then the loss in float32.

    Wrapped in DDP as a whole, so the classifier (applied to the gathered global batch) is synchronised too.
    """

    def __init__(self, model: EmbeddingModel, loss_fn: CompositeLoss, *, features: bool, dist: Dist,
                 amp: torch.dtype | None, device_type: str) -> None:
        super().__init__()
        self.model, self.loss_fn, self.features, self.dist = model, loss_fn, features, dist
        self.amp, self.device_type = amp, device_type
        self.reads_feat = loss_fn.reads_feat

    def forward(self, x: torch.Tensor, labels: torch.Tensor, old_emb: torch.Tensor | None,
                extras: dict[str, torch.Tensor | None]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        with torch.autocast(self.device_type, dtype=self.amp or torch.bfloat16, enabled=self.amp is not None):
            feat = x if self.features else self.model.backbone(x)
            raw = self.model.head(feat)
        emb = F.normalize(raw.float(), dim=1)
        d = self.dist
        # the backbone features cross the ranks only for a term that reads them (a 2048-d ResNet-50 batch each step)
        feat = d.gather(feat.detach().float()) if self.reads_feat else None
        emb, labels = d.gather_grad(emb), d.gather(labels)
        if old_emb is not None:
            old_emb = d.gather(old_emb)
        seen = extras.get("seen_cls")
        cos = self.model.classifier(emb)
        li = LossInputs(emb=emb, labels=labels, cos=cos, old_emb=old_emb, old_weight=extras.get("old_weight"),
                        feat=feat, bank_emb=extras.get("bank_emb"), bank_labels=extras.get("bank_labels"))
        if seen is not None:
            li.seen_mask = seen[labels]
        loss, parts = self.loss_fn(li)
        correct = (cos.detach().argmax(1) == labels).sum()
        return loss, parts, correct


def _sync_bn(module: nn.Module, back: bool = False) -> None:
    """BatchNorm layers to SyncBatchNorm (GPU DDP: statistics over the global batch) in place, or ``back`` to the
    kind each was (export and CPU use need the plain layers). Parameters and buffers are the same tensors."""
    for name, child in module.named_children():
        if not back and isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
            new: nn.Module = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                              child.track_running_stats)
            new._qc_kind = type(child)  # type: ignore[assignment]
        elif back and isinstance(child, nn.SyncBatchNorm):
            new = getattr(child, "_qc_kind", nn.BatchNorm2d)(child.num_features, child.eps, child.momentum, child.affine,
                                                             child.track_running_stats)
        else:
            _sync_bn(child, back)
            continue
        if child.affine:
            new.weight, new.bias = child.weight, child.bias
        new.running_mean, new.running_var = child.running_mean, child.running_var  # type: ignore[assignment]
        new.num_batches_tracked = child.num_batches_tracked  # type: ignore[assignment]
        new.train(child.training)
        setattr(module, name, new)


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        t = min(s - warmup, total - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))

    return f


@dataclass
class _Inputs:
    """What the loop draws batches from (chosen once)."""

    mode: str  # stream | features | tensor
    tensor: torch.Tensor | None = None  # features or preprocessed images (features / tensor modes)
    loader: Any = None  # the streaming DataLoader
    valid: torch.Tensor | None = None  # False for images known to be unreadable


class _Sums:
    """Per-epoch sums kept on the device; read (and synchronised over ranks) at log points only."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.terms: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.steps = 0
        self.images = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], correct: torch.Tensor, n: int, accum: int) -> None:
        for k, v in {"loss": loss.detach(), **parts}.items():
            self.terms[k] = self.terms.get(k, torch.zeros((), device=self.device)) + v.detach().float() / accum
        self.correct += correct
        self.images += n

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(self.steps, 1) for k, v in self.terms.items()}

    def to_state(self) -> dict[str, Any]:
        return {"terms": {k: float(v) for k, v in self.terms.items()}, "correct": int(self.correct), "steps": self.steps,
                "images": self.images}

    def load(self, st: dict[str, Any]) -> None:
        self.terms = {k: torch.tensor(float(v), device=self.device) for k, v in st["terms"].items()}
        self.correct = torch.tensor(int(st["correct"]), device=self.device)
        self.steps, self.images = int(st["steps"]), int(st["images"])


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
    on_log: LogHook | None = None,
    out_dir: str | None = None,
    resume: bool = False,
    cache: Any = None,
    dist: Dist | None = None,
    gate: GateConfig | None = None,
    gate_data: tuple[Any, np.ndarray] | None = None,
) -> TrainResult:
    """Train an embedding model on a labelled image source.

    Args:
        source: an :class:`~qdrant_compat.data.ImageSource` (image folder, npz, image list, arrays).
        model_config: architecture; ``num_classes`` is taken from ``source`` when 0.
        train_config: optimisation, losses (``BCT_LOSSES`` with ``old`` for compatible training), augmentation,
            AMP, workers, accumulation, checkpointing.
        spec: preprocessing, as recorded in the model card (serving never augments).
        old: the frozen old model's targets (:func:`prepare_old_targets`), for compatible training; on augmented
            batches the old model is run on each batch (:class:`SameViewOld`).
        weights: local backbone state dict (nothing is downloaded).
        features: precomputed backbone features for ``source`` (frozen backbone only).
        images: ``source`` already preprocessed ``(n, C, S, S)`` (the in-memory input).
        progress: ``(step, total)`` after every step; ``on_log``: a :class:`StepReport` every ``log_every`` steps.
        out_dir: where resume states are written (``checkpoint_every`` steps and each epoch); ``resume``: continue
            from the state there.
        cache: a :class:`~qdrant_compat.runtime.cache.VectorCache` for frozen-backbone features.
        dist: the DDP context (default: from torchrun's environment).
        gate: with ``old`` (and labels), keep a per-class slice apart and measure compatibility on it after each
            epoch (:mod:`~qdrant_compat.training.gate`): the kept model is the best epoch that meets the
            criterion, and ``TrainResult.gate`` says whether one did.
        gate_data: ``(labelled source, the old model's embeddings of it)``: the gate measures on these images
            instead of holding out training images (fairer when the old model was trained on the training data,
            and nothing is taken from training).

    Returns:
        The trained model (eval mode, on the CPU), the per-epoch history and the unreadable images skipped.
    """
    cfg = train_config
    if cfg.no_labels:  # label-free: the source's labels are never read
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
    loss_fn = build_loss(cfg)
    if loss_fn.needs_old and old is None:
        raise InvalidArgumentError(
            f"losses {sorted(cfg.losses)} need an old model; pass old_model (CLI: --old-model NAME@VERSION)"
        )
    if old is not None and len(old.embeddings) != len(source):
        raise InvalidArgumentError(f"old embeddings cover {len(old.embeddings)} images, training has {len(source)}")
    augment = get_augment(cfg.effective_augment)
    gate_obj = None
    if gate is not None and old is not None:
        if cfg.no_labels:
            log.warning("the compatibility gate needs labels to measure retrieval; label-free training runs without it")
        elif gate_data is not None:
            g_src, g_old = gate_data
            if len(g_old) != len(g_src):
                raise InvalidArgumentError(f"gate data: {len(g_old)} old embeddings for {len(g_src)} images")
            gate_obj = CompatibilityGate(gate, g_src, np.asarray(g_src.labels), np.asarray(g_old, dtype=np.float32), spec,
                                         source="images of the gate set")
        else:
            source, labels_np, old, images, features, gate_obj = _hold_out(source, labels_np, old, images, features,
                                                                           gate, spec)
    dist = dist or Dist.from_env(resolve_device(cfg.device))
    device = dist.device(resolve_device(cfg.device))
    model_config = replace(model_config, num_classes=num_classes)
    seed_everything(cfg.seed)
    model = EmbeddingModel(model_config, weights=weights)
    loss_fn.bind(model_config.dim, None if old is None else int(old.embeddings.shape[1]))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.perf_counter()

    # ---- the input, chosen once
    valid = torch.ones(len(source), dtype=torch.bool)
    if old is not None and old.unreadable:
        valid[torch.tensor(old.unreadable)] = False
    if images is not None:
        if tuple(images.shape) != (len(source), spec.channels, spec.size, spec.size):
            raise InvalidArgumentError(
                f"images must have shape ({len(source)}, {spec.channels}, {spec.size}, {spec.size}), got {tuple(images.shape)}"
            )
        if augment.crops or augment.jitter:
            raise InvalidArgumentError(f"augmentation {augment.name!r} needs the images themselves; preprocessed "
                                       "in-memory images take 'none' or 'flip'")
        inputs = _Inputs("tensor", tensor=images, valid=valid)
    elif model_config.freeze_backbone and augment.name == "none":
        if features is None:
            features = compute_features(model, source, spec, device=device, cache=cache, workers=cfg.workers)
        elif len(features) != len(source):
            raise InvalidArgumentError(f"{len(features)} cached features for {len(source)} images")
        valid &= torch.isfinite(features).all(dim=1)
        inputs = _Inputs("features", tensor=features, valid=valid)
    else:
        inputs = _Inputs("stream", valid=valid)
    t_feat = time.perf_counter() - t0 if inputs.mode == "features" else 0.0
    labels = torch.from_numpy(labels_np.astype(np.int64))
    loop = _Loop(model, loss_fn, cfg, spec, inputs, labels, old, augment, dist, device, source)
    loop.gate = gate_obj
    history, skipped, ips, resumed = loop.run(progress=progress, on_epoch=on_epoch, on_log=on_log, out_dir=out_dir,
                                              resume=resume)
    gate_res = gate_obj.finish(model, cfg.epochs) if gate_obj is not None else None
    if gate_res is not None:
        log.info("%s", gate_res.sentence())
    model.cpu().eval()
    loss_fn.cpu().eval()
    adapters = loss_fn.adapters()
    return TrainResult(model=model, adapters=adapters, history=history, seconds=time.perf_counter() - t0 - t_feat, feature_seconds=t_feat,
                       skipped=skipped, input_mode=inputs.mode, images_per_s=ips, resumed_from_step=resumed, gate=gate_res)


def _hold_out(source: Any, labels_np: np.ndarray, old: OldTargets, images: torch.Tensor | None,
              features: torch.Tensor | None, gate: GateConfig, spec: InputSpec) -> tuple[Any, ...]:
    """The gate's per-class slice taken out of everything training reads (source, labels, old targets, tensors)."""
    from qdrant_compat.data.images import _Subset

    readable = np.setdiff1d(np.arange(len(labels_np)), np.asarray(old.unreadable, dtype=np.int64))
    tr_r, ho_r = split_holdout(labels_np[readable], gate)
    held = readable[ho_r]
    train_idx = np.setdiff1d(np.arange(len(labels_np)), held)
    remap = {int(i): k for k, i in enumerate(train_idx)}
    gate_obj = CompatibilityGate(gate, _Subset(source, held), labels_np[held], old.embeddings[held], spec)
    old = replace(old, embeddings=old.embeddings[train_idx], unreadable=[remap[i] for i in old.unreadable if i in remap])
    sub = _Subset(source, train_idx)
    log.info("compatibility gate: %d images of %d classes held out, %d left to train on", len(held),
             len(np.unique(labels_np[held])), len(train_idx))
    t = torch.from_numpy(train_idx)
    return (sub, labels_np[train_idx], old, None if images is None else images[t],
            None if features is None else features[t], gate_obj)


class _Loop:
    """The loop itself: built by :func:`train_model`, run once."""

    def __init__(self, model: EmbeddingModel, loss_fn: CompositeLoss, cfg: TrainConfig, spec: InputSpec, inputs: _Inputs,
                 labels: torch.Tensor, old: OldTargets | None, augment: Any, dist: Dist, device: str, source: Any) -> None:
        self.model, self.loss_fn, self.cfg, self.spec, self.inputs = model, loss_fn, cfg, spec, inputs
        self.labels, self.old, self.augment, self.dist, self.device, self.source = labels, old, augment, dist, device, source
        self.gate: CompatibilityGate | None = None
        self.cuda = device.startswith("cuda")
        self.amp = amp_dtype(cfg.amp, device)
        self.channels_last = self.cuda if cfg.channels_last is None else cfg.channels_last
        self.sampler = StepSampler(len(labels), cfg.batch_size, cfg.seed, rank=dist.rank, world=dist.world,
                                   accum=cfg.accum_steps)
        self.total = self.sampler.steps_per_epoch * cfg.epochs
        self.same_view: SameViewOld | None = None
        self._check_seen_terms()
        if old is not None and inputs.mode == "stream" and augment.name != "none":
            if not old.onnx_path:
                raise InvalidArgumentError("augmented compatible training runs the old model on each batch: its targets "
                                           "need the old ONNX graph (build them with prepare_old_targets)")
            self.same_view = SameViewOld(old.onnx_path, old.card)

    def _check_seen_terms(self) -> None:
        """A term restricted to the classes the old classifier knew would be 0 on every step when it knew none of
        the training classes (an imported model without its classifier): say so now, and apply it to every image."""
        old = self.old
        if old is None or not old.classes or len(old.synthesized) < len(old.classes):
            return
        for name, term in self.loss_fn.terms.items():
            if getattr(term, "only_seen", False):
                term.only_seen = False  # type: ignore[assignment]
                log.warning(
                    "%s reads only images of classes the old classifier knew, and %s has no classifier row for any of "
                    "the %d training classes (every row is synthesised): it would be 0 on every step, so it is applied "
                    "to every image instead; attach the team's classifier (model import --classifier) to keep it to "
                    "the classes %s saw", name, old.card.ref, len(old.classes), old.card.ref)

    # ---- set-up
    def _optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        m, cfg = self.model, self.cfg
        head_params = list(m.head.parameters()) + list(m.classifier.parameters())
        groups: list[dict[str, Any]] = [{"params": head_params, "lr": cfg.lr}]
        if self.inputs.mode != "features" and not m.config.freeze_backbone:
            groups.append({"params": list(m.backbone.parameters()), "lr": cfg.backbone_lr or cfg.lr})
        own = list(self.loss_fn.parameters())  # terms with parameters of their own (a predictor head)
        if own:
            groups.append({"params": own, "lr": cfg.lr})
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(self.total, cfg.warmup_steps))
        return opt, sched

    def _step_module(self) -> nn.Module:
        m = self.model
        if self.dist.enabled and self.cuda and self.cfg.sync_bn:
            _sync_bn(m)
        m.to(self.device)
        self.loss_fn.to(self.device)
        if self.channels_last:
            m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        step: nn.Module = TrainStep(m, self.loss_fn, features=self.inputs.mode == "features", dist=self.dist,
                                    amp=self.amp, device_type="cuda" if self.cuda else "cpu")
        if self.dist.enabled:
            step = nn.parallel.DistributedDataParallel(step, device_ids=[self.dist.local_rank] if self.cuda else None)
        if self.cfg.compile:
            step = torch.compile(step)  # type: ignore[assignment]
        return step

    def _extras(self) -> dict[str, torch.Tensor | None]:
        old, dev = self.old, self.device
        if old is None:
            return {}
        out: dict[str, torch.Tensor | None] = {"old_weight": torch.from_numpy(old.weight).to(dev)}
        if old.classes:
            synth = set(old.synthesized)
            out["seen_cls"] = torch.tensor([c not in synth for c in old.classes], device=dev)
        return out

    # ---- batches
    def _batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        self.sampler.set_epoch(epoch, start)
        if self.inputs.mode == "stream":
            if self.inputs.loader is None:
                self.inputs.loader = make_loader(self.source, self.spec, self.augment, self.sampler,
                                                 workers=self.cfg.workers, pin_memory=self.cuda, prefetch=self.cfg.prefetch)
            yield from self.inputs.loader
            return
        for keys in self.sampler:
            idx = torch.tensor([k for k, _ in keys], dtype=torch.int64)
            x = self.inputs.tensor[idx]  # type: ignore[index]
            if self.inputs.mode == "tensor" and self.augment.flip:
                flip = torch.tensor([(s >> 17) & 1 == 1 for _, s in keys])
                x[flip] = x[flip].flip(-1)
            yield {"idx": idx, "x": x, "skipped": []}

    def _prepare(self, b: dict[str, Any], mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(x, idx, views)`` on the device; unreadable images dropped (to the smallest share over ranks)."""
        idx, x = b["idx"], b["x"]
        keep = self.inputs.valid[idx] if self.inputs.valid is not None else None  # type: ignore[index]
        if keep is not None and not bool(keep.all()):
            idx, x = idx[keep], x[keep]
        n = self.dist.min_int(len(idx), self.device)
        idx, x = idx[:n], x[:n]
        views = None
        x = x.to(self.device, non_blocking=True)
        if self.inputs.mode == "stream":
            views = x.float().div_(255)
            x = (views - mean) / std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, idx, views

    # ---- the loop
    def run(self, *, progress: ProgressFn | None, on_epoch: EpochHook | None, on_log: LogHook | None,
            out_dir: str | None, resume: bool) -> tuple[list[dict[str, float]], dict[int, str], float, int]:
        cfg, dev, dist = self.cfg, self.device, self.dist
        opt, sched = self._optimizer()
        step_mod = self._step_module()
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        extras = self._extras()
        old_all = torch.from_numpy(self.old.embeddings) if self.old is not None else None
        mean, std = normalizer(self.spec, dev)
        history: list[dict[str, float]] = []
        skipped: dict[int, str] = {}
        start_epoch = start_step = global_step = 0
        sums = _Sums(dev)
        epoch_elapsed = 0.0
        run_key = self._run_key()
        if resume:
            if out_dir is None:
                raise InvalidArgumentError("resume needs the folder the run wrote its state to (out_dir)")
            st = resume_state.load_state(out_dir)
            resume_state.check_same_run(st["run"], run_key)
            self.model.load_state_dict(st["model"])
            self.loss_fn.load_state_dict(st.get("loss", {}))
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            scaler.load_state_dict(st["scaler"])
            start_epoch, start_step, global_step = int(st["epoch"]), int(st["step"]), int(st["global_step"])
            history = list(st["history"])
            skipped = {int(k): v for k, v in st["skipped"].items()}
            sums.load(st["sums"])
            epoch_elapsed = float(st["epoch_seconds"])
            resume_state.set_rng_state(st["rng"])
            if self.gate is not None and st.get("gate") is not None:
                self.gate.load(st["gate"], self.loss_fn)
            log.info("resuming at epoch %d step %d (global step %d of %d)", start_epoch + 1, start_step, global_step, self.total)
        resumed_from = global_step

        def save(epoch: int, step: int, t_epoch: float) -> None:
            if out_dir is None or not dist.is_main:
                return
            resume_state.save_state(out_dir, {
                "run": run_key, "model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step,
                "global_step": global_step, "history": history, "skipped": {str(k): v for k, v in skipped.items()},
                "sums": sums.to_state(), "epoch_seconds": t_epoch, "rng": resume_state.rng_state(),
                "gate": self.gate.to_state() if self.gate is not None else None,
            })

        spe = self.sampler.steps_per_epoch
        t_run, steps_run, images_run = time.perf_counter(), 0, 0
        last_log_t, last_log_images = t_run, 0
        for epoch in range(start_epoch, cfg.epochs):
            first = start_step if epoch == start_epoch else 0
            self.model.train()
            t_epoch = time.perf_counter() - epoch_elapsed
            it = self._batches(epoch, first)
            for step in range(first, spe):
                n_step = 0
                for micro in range(cfg.accum_steps):
                    b = next(it)
                    for i, why in b["skipped"]:
                        if int(i) not in skipped:
                            skipped[int(i)] = why
                            log.warning("image %d skipped: %s", int(i), why)
                    x, idx, views = self._prepare(b, mean, std)
                    if len(idx) < 2:
                        continue  # nothing (or one image) readable in this micro-batch: no loss to take
                    yb = self.labels[idx].to(dev, non_blocking=True)
                    old_emb = None
                    if self.same_view is not None:
                        old_emb = self.same_view(views)
                    elif old_all is not None:
                        old_emb = old_all[idx].to(dev, non_blocking=True)
                    ex = extras
                    if old_all is not None and cfg.bank_size > 0:
                        g = torch.Generator().manual_seed(sample_seed(cfg.seed, global_step, 0x5EED))
                        bank = torch.randint(0, len(old_all), (cfg.bank_size,), generator=g)
                        ex = {**extras, "bank_emb": old_all[bank].to(dev), "bank_labels": self.labels[bank].to(dev)}
                    sync = contextlib.nullcontext() if not dist.enabled or micro == cfg.accum_steps - 1 else step_mod.no_sync()  # type: ignore[operator]
                    with sync:
                        loss, parts, correct = step_mod(x, yb, old_emb, ex)
                        scaler.scale(loss / cfg.accum_steps).backward()
                    if not self.cuda and not torch.isfinite(loss):
                        raise InvalidArgumentError(f"training diverged at epoch {epoch + 1} (loss {float(loss)}); lower --lr")
                    sums.add(loss, parts, correct, len(idx) * dist.world, cfg.accum_steps)
                    n_step += len(idx) * dist.world
                if n_step:
                    scaler.step(opt)
                    scaler.update()
                opt.zero_grad(set_to_none=True)
                sched.step()
                global_step += 1
                sums.steps += 1
                steps_run += 1
                images_run += n_step
                if progress:
                    progress(global_step, self.total)
                if cfg.log_every and global_step % cfg.log_every == 0:
                    now = time.perf_counter()
                    means = sums.means()
                    self._check_finite(means, epoch)
                    ips = (images_run - last_log_images) / max(now - last_log_t, 1e-9)
                    last_log_t, last_log_images = now, images_run
                    rep = StepReport(epoch + 1, cfg.epochs, global_step, self.total, means, ips,
                                     (self.total - global_step) * (now - t_run) / max(steps_run, 1), len(skipped))
                    log.info("%s", rep.line())
                    if on_log:
                        on_log(rep)
                if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and step + 1 < spe:
                    save(epoch, step + 1, time.perf_counter() - t_epoch)
            row = self._epoch_row(sums, epoch, time.perf_counter() - t_epoch)
            if self.gate is not None and ((epoch + 1) % self.gate.cfg.every == 0 or epoch + 1 == cfg.epochs):
                measured = self.gate.measure(self.model, dev, epoch + 1, self.loss_fn, cfg.epochs)
                row.update({f"gate_{k}": v for k, v in measured.items() if k != "epoch"})
            history.append(row)
            log.info("epoch %d/%d loss %.4f train_acc %.3f (%s) %.1fs", epoch + 1, cfg.epochs, row["loss"],
                     row["train_acc"], ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                  if k not in ("loss", "epoch", "train_acc", "seconds", "images_per_s")),
                     row["seconds"])
            if on_epoch:
                on_epoch(epoch + 1, row)
            sums, epoch_elapsed = _Sums(dev), 0.0
            save(epoch + 1, 0, 0.0)
        elapsed = time.perf_counter() - t_run  # before the workers are shut down: that is not training
        self.inputs.loader = None  # stops persistent workers
        _sync_bn(self.model, back=True)
        return history, skipped, images_run / max(elapsed, 1e-9), resumed_from

    def _check_finite(self, means: dict[str, float], epoch: int) -> None:
        if not math.isfinite(means.get("loss", 0.0)):
            raise InvalidArgumentError(f"training diverged at epoch {epoch + 1} (loss {means['loss']}); lower --lr")

    def _epoch_row(self, sums: _Sums, epoch: int, seconds: float) -> dict[str, float]:
        names = sorted(sums.terms)
        vec = torch.stack([sums.terms[k] for k in names] + [sums.correct.float()]) if names else sums.correct.float().view(1)
        # the terms are already global (computed on the gathered batch); the correct counts are too
        values = vec.tolist()
        row = {k: v / max(sums.steps, 1) for k, v in zip(names, values[:-1], strict=True)}
        self._check_finite(row, epoch)
        row.update(epoch=epoch + 1, train_acc=values[-1] / max(sums.images, 1), seconds=seconds,
                   images_per_s=sums.images / max(seconds, 1e-9))
        return row

    def _run_key(self) -> dict[str, Any]:
        """What must match for a resume to continue the same computation."""
        cfg = asdict(self.cfg)
        return {**{k: v for k, v in cfg.items()}, "model": asdict(self.model.config), "spec": asdict(self.spec),
                "images": len(self.labels), "world": self.dist.world,
                "old": self.old.card.fingerprint if self.old is not None else None}
