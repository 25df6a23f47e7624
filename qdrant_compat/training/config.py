"""Typed training configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses.base import list_losses

PLAIN_LOSSES: dict[str, float] = {"norm_softmax": 1.0}
# The compatible-training default, chosen on a held-out part of the Tiny-ImageNet train split
# (benchmarks/p1_bct.py --eval-on holdout; README, "Which losses and why"). Use batches of 512 or more:
# the contrastive term's gallery is the batch.
# label-free compatible training (``no_labels``): instance-level new->old contrast, the new backbone's own
# neighbourhoods, and the old model's neighbourhoods (cross_distill reads no label either); chosen on the train
# hold-out (README, "Which losses and why"); LABEL_FREE_LOSSES are the only losses that read no label
NOLABEL_LOSSES: dict[str, float] = {"instance_contrastive": 1.0, "self_distill": 1.0, "cross_distill": 4.0}
LABEL_FREE_LOSSES = ("instance_contrastive", "self_distill", "cross_distill", "alignment", "predictor")
AMP_MODES = ("auto", "bf16", "fp16", "off")
BCT_LOSSES: dict[str, float] = {"norm_softmax": 1.0, "influence": 1.0, "cross_contrastive": 8.0, "cross_distill": 4.0}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    losses: dict[str, float] = field(default_factory=lambda: dict(PLAIN_LOSSES))
    loss_options: dict[str, dict[str, float]] = field(default_factory=dict)
    hflip: bool = False  # kept for older callers: the same as augment="flip"
    bank_size: int = 0
    no_labels: bool = False  # the training set's labels are ignored and never read (label-free compatible training)
    augment: str = "none"  # none | flip | light | standard (training/data.py: AUGMENTS)
    workers: int = 2  # DataLoader worker processes of the streaming input (0: read in the training process)
    prefetch: int = 2  # batches each worker prepares ahead
    amp: str = "auto"  # auto (bf16 on a GPU that has it, else fp16; off on a CPU) | bf16 | fp16 | off
    channels_last: bool | None = None  # None: on a GPU
    compile: bool = False  # torch.compile the training step
    accum_steps: int = 1  # micro-batches per optimisation step (batch_size is the step's global batch)
    warmup_steps: int = 0  # linear warm-up before the cosine decay
    checkpoint_every: int = 0  # steps between resume states (0: at each epoch's end only)
    log_every: int = 50  # steps between progress reports (loss terms, images/s)
    deterministic: bool = False  # torch.use_deterministic_algorithms (CPU runs are deterministic anyway)
    sync_bn: bool = True  # BatchNorm statistics over the global batch under GPU DDP

    @property
    def effective_augment(self) -> str:
        return "flip" if self.hflip and self.augment == "none" else self.augment

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InvalidArgumentError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise InvalidArgumentError(f"batch_size must be >= 2, got {self.batch_size}")
        if not self.lr > 0:
            raise InvalidArgumentError(f"lr must be > 0, got {self.lr}")
        unknown = sorted(set(self.losses) - set(list_losses()))
        if unknown:
            raise InvalidArgumentError(f"unknown loss(es) {unknown}; choose from {list_losses()}")
        if self.bank_size < 0:
            raise InvalidArgumentError(f"bank_size must be >= 0, got {self.bank_size}")
        if not self.losses:
            raise InvalidArgumentError("losses must name at least one loss")
        from qdrant_compat.training.data import AUGMENTS

        if self.augment not in AUGMENTS:
            raise InvalidArgumentError(f"unknown augmentation {self.augment!r}; choose one of {list(AUGMENTS)}")
        if self.amp not in AMP_MODES:
            raise InvalidArgumentError(f"amp must be one of {list(AMP_MODES)}, got {self.amp!r}")
        for name in ("workers", "warmup_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.accum_steps < 1 or self.prefetch < 1:
            raise InvalidArgumentError(f"accum_steps and prefetch must be >= 1, got {self.accum_steps}, {self.prefetch}")
        if self.no_labels:
            needing = sorted(set(self.losses) - set(LABEL_FREE_LOSSES))
            if needing:
                raise InvalidArgumentError(f"no_labels: loss(es) {needing} need labels; label-free losses: {list(LABEL_FREE_LOSSES)}")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device {device!r} asked for but CUDA is not available; use 'cpu' or 'auto'")
    return device
