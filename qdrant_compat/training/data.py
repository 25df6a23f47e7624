"""Streaming training input: named augmentations, a deterministic step sampler and a DataLoader factory.

Nothing here holds more than the batches in flight: a worker reads image ``i`` from the source (folder,
npz, image list), makes the view and hands back ``uint8`` pixels, which the loop normalises on the device.
Every random choice is seeded by ``(seed, epoch, image)``: the same image gets the same view whatever the
number of workers or processes, so a resumed run, or a torchrun run on several GPUs, sees exactly the batches
an uninterrupted single-process run sees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from qdrant_compat.cards import InputSpec
from qdrant_compat.data.transforms import _resize, to_pil
from qdrant_compat.errors import InvalidArgumentError, QdrantCompatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    """A named augmentation, recorded in the checkpoint and the card (serving never augments: the card's input
    spec is the serving preprocessing).

    Attributes:
        scale, ratio: RandomResizedCrop's area and aspect-ratio ranges (``scale=(1, 1)``: no crop, the spec's
            own resize).
        flip: horizontal flip with probability 0.5.
        jitter: ColorJitter's brightness/contrast/saturation strength (0: none; saturation only on RGB).
    """

    name: str
    scale: tuple[float, float] = (1.0, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    jitter: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def crops(self) -> bool:
        return self.scale != (1.0, 1.0)


AUGMENTS: dict[str, Augment] = {
    "none": Augment("none"),
    "flip": Augment("flip", flip=True),
    "light": Augment("light", scale=(0.6, 1.0), flip=True),
    "standard": Augment("standard", scale=(0.25, 1.0), flip=True, jitter=0.4),  # timm/ImageNet-style, milder crop
}


def get_augment(name: str) -> Augment:
    if name not in AUGMENTS:
        raise InvalidArgumentError(f"unknown augmentation {name!r}; choose one of {list(AUGMENTS)}")
    return AUGMENTS[name]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one image's view in one epoch (a 63-bit mix; independent of workers and ranks)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) % (1 << 64)
    x ^= x >> 31
    return int(x % (1 << 63))


class ViewTransform:
    """Image -> ``uint8 (C, S, S)`` tensor: the spec's own resize (``none``), or the augmentation's random view.

    With ``none`` the pixels are exactly those :func:`~qdrant_compat.data.preprocess` normalises, so the
    loop's on-device normalisation gives the serving tensor bit for bit.
    """

    def __init__(self, spec: InputSpec, augment: Augment) -> None:
        self.spec, self.augment = spec, augment
        self._ops: Any = None

    def _build(self) -> Any:
        from torchvision.transforms import v2

        s = int(self.spec.size)
        ops: list[Any] = []
        if self.augment.crops:
            ops.append(v2.RandomResizedCrop((s, s), scale=self.augment.scale, ratio=self.augment.ratio, antialias=True))
        if self.augment.flip:
            ops.append(v2.RandomHorizontalFlip())
        if self.augment.jitter:
            j = self.augment.jitter
            ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if self.spec.channels == 3 else 0))
        return v2.Compose(ops)

    def __call__(self, img: Any, seed: int) -> torch.Tensor:
        pil = to_pil(img, self.spec.channels)
        if self.augment.name != "none":
            if self._ops is None:
                self._ops = self._build()
            if not self.augment.crops:
                pil = _resize(pil, self.spec)
            gen = torch.default_generator
            saved = gen.get_state()
            gen.manual_seed(seed)  # the CPU generator alone: torch.manual_seed also queues a CUDA seed with a traceback
            try:
                pil = self._ops(pil)
            finally:
                gen.set_state(saved)
        else:
            pil = _resize(pil, self.spec)
        arr = np.array(pil, dtype=np.uint8)  # a writable copy
        arr = arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
        return torch.from_numpy(arr)


class TrainImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Map-style dataset over an :class:`~qdrant_compat.data.ImageSource`, keyed by ``(index, view seed)``.

    An image that cannot be read or decoded (missing, 404, corrupt, a decompression bomb) is not raised: the
    item carries its reason, and the collate function drops it from the batch and reports it.
    """

    def __init__(self, source: Any, transform: ViewTransform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, torch.Tensor | None, str | None]:
        i, seed = key
        try:
            return i, self.transform(self.source.get(i), seed), None
        except (QdrantCompatError, OSError, ValueError) as exc:
            return i, None, str(exc)


def collate(items: Sequence[tuple[int, torch.Tensor | None, str | None]]) -> dict[str, Any]:
    """Stack the readable views; ``skipped`` lists ``(index, reason)`` for the others."""
    ok = [(i, x) for i, x, _ in items if x is not None]
    skipped = [(i, str(e)) for i, x, e in items if x is None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.int64)
    x = torch.stack([x for _, x in ok]) if ok else torch.empty(0, dtype=torch.uint8)
    return {"idx": idx, "x": x, "skipped": skipped}


class StepSampler:
    """Yields the micro-batches of one process, step by step, from a per-epoch permutation.

    One optimisation step takes ``global_batch`` images: permutation ``[step * G, (step + 1) * G)``, split into
    ``world`` equal rank shares, each split into ``accum`` micro-batches. The permutation depends on
    ``(seed, epoch)`` alone, so the images of step ``k`` are the same for any world size, and
    :meth:`set_epoch` with ``start_step`` resumes in the middle of an epoch.
    """

    def __init__(self, n: int, global_batch: int, seed: int, *, rank: int = 0, world: int = 1, accum: int = 1) -> None:
        if n < 1:
            raise InvalidArgumentError("the training source holds no images")
        per = world * accum
        if global_batch % per:
            raise InvalidArgumentError(
                f"batch size {global_batch} must be a multiple of processes x accumulation steps ({world} x {accum})")
        g = min(global_batch, n - n % per) if n < global_batch else global_batch
        if g < per:
            raise InvalidArgumentError(f"{n} images cannot fill one step of {world} process(es) x {accum} micro-batch(es)")
        self.n, self.global_batch, self.seed = n, g, seed
        self.rank, self.world, self.accum = rank, world, accum
        self.steps_per_epoch = n // g
        self.micro = g // per
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=gen)

    def step_indices(self, perm: torch.Tensor, step: int) -> list[torch.Tensor]:
        """This process's micro-batches (indices) of ``step``."""
        g, share = self.global_batch, self.global_batch // self.world
        mine = perm[step * g : (step + 1) * g][self.rank * share : (self.rank + 1) * share]
        return [mine[m * self.micro : (m + 1) * self.micro] for m in range(self.accum)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = self.permutation(self.epoch)
        for step in range(self.start_step, self.steps_per_epoch):
            for mb in self.step_indices(perm, step):
                yield [(int(i), sample_seed(self.seed, self.epoch, int(i))) for i in mb]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum


def make_loader(source: Any, spec: InputSpec, augment: Augment, sampler: StepSampler, *, workers: int = 2,
                pin_memory: bool = False, prefetch: int = 2) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
    """The DataLoader of the streaming path: ``workers`` processes read and make views ``prefetch`` batches
    ahead each; the main process only normalises and trains."""
    if workers < 0:
        raise InvalidArgumentError(f"workers must be >= 0, got {workers}")
    return torch.utils.data.DataLoader(
        TrainImages(source, ViewTransform(spec, augment)), batch_sampler=sampler, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory, persistent_workers=workers > 0,
        prefetch_factor=prefetch if workers > 0 else None,
        generator=torch.Generator().manual_seed(0),  # the loader's own seed never draws from the global RNG
    )


def normalizer(spec: InputSpec, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` as ``(1, C, 1, 1)`` tensors on ``device`` (uint8 view -> ``(x / 255 - mean) / std``)."""
    c = spec.channels
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, c, 1, 1)
    return mean, std
