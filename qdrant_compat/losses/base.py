"""One small interface for every training loss: ``loss(inputs) -> scalar``."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from qdrant_compat._registry import NamedRegistry
from qdrant_compat.errors import InvalidArgumentError


@dataclass
class LossInputs:
    """What a loss may read. Old-model fields are None in plain (non-compatible) training.

    Attributes:
        emb: new embeddings ``(n, d)``, L2-normalised.
        labels: class indices ``(n,)`` in the new model's label space.
        cos: cosine of each embedding to each row of the new classifier ``(n, C)``.
        old_emb: the frozen old model's normalised embedding of the same images ``(n, d_old)``.
        old_weight: frozen old-classifier rows re-indexed to the new label space ``(C, d_old)``,
            with synthesised rows for classes the old model never saw; normalised.
        seen_mask: ``(n,)`` True for images of classes the old classifier knew (not synthesised).
        bank_emb, bank_labels: a random sample of the old model's embeddings of *other* training images
            (a stand-in for the old gallery), drawn each step when ``TrainConfig.bank_size > 0``.
        feat: the new backbone's features of the batch (no gradient), read by label-free terms.
    """

    emb: torch.Tensor
    labels: torch.Tensor
    cos: torch.Tensor
    old_emb: torch.Tensor | None = None
    old_weight: torch.Tensor | None = None
    bank_emb: torch.Tensor | None = None
    bank_labels: torch.Tensor | None = None
    seen_mask: torch.Tensor | None = None
    feat: torch.Tensor | None = None  # the new backbone's features of the batch (detached), for label-free terms
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def cross_similarity(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(keys, key_labels, sim)``: the old gallery of this step (the batch's old embeddings, then the bank's)
        and every new embedding's cosine to it. Computed once per step and shared by the cross-model terms
        (one matmul forward and backward instead of one per term)."""
        key = (id(self.emb), id(self.old_emb), id(self.bank_emb), id(self.labels))  # fields replaced: recomputed
        hit = self._cache.get(key)
        if hit is None:
            old_emb, _ = self.need_old("cross-model term")
            keys, key_labels = old_emb, self.labels
            if self.bank_emb is not None and self.bank_labels is not None:
                keys = torch.cat([old_emb, self.bank_emb])
                key_labels = torch.cat([self.labels, self.bank_labels])
            hit = (keys, key_labels, self.emb_in_old_space() @ keys.t())
            self._cache.clear()
            self._cache[key] = hit
        return hit

    def scaled_similarity(self, temperature: float) -> torch.Tensor:
        """:meth:`cross_similarity` divided by ``temperature``, shared by the terms that use the same one."""
        _, _, sim = self.cross_similarity()
        key = ("scaled", id(sim), temperature)
        hit = self._cache.get(key)
        if hit is None:
            hit = sim / temperature
            self._cache[key] = hit
        return hit  # type: ignore[no-any-return]

    def need_old(self, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.old_emb is None or self.old_weight is None:
            raise InvalidArgumentError(f"loss {what!r} needs an old model (train with old_model=...)")
        return self.old_emb, self.old_weight

    def emb_in_old_space(self) -> torch.Tensor:
        """The first ``d_old`` dimensions, renormalised (new dim may exceed old, as in BT²)."""
        assert self.old_weight is not None
        d_old = self.old_weight.shape[1]
        e = self.emb[:, :d_old]
        return e if d_old == self.emb.shape[1] else nn.functional.normalize(e, dim=1)


class BaseLoss(nn.Module, abc.ABC):
    """Subclass and implement :meth:`compute`. ``needs_old`` marks losses that read the old model, ``reads_feat``
    those that read the backbone features (``LossInputs.feat``, which the loop only gathers across ranks for them)."""

    needs_old: bool = False
    reads_feat: bool = False

    @abc.abstractmethod
    def compute(self, inputs: LossInputs) -> torch.Tensor:
        """The loss value for one batch (a scalar tensor)."""

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return self.compute(inputs)

    def bind(self, emb_dim: int, old_dim: int) -> None:
        """Build any parameters that depend on the dimensions (called once, before the optimiser is made); a term
        with parameters of its own (e.g. a predictor head) is optimised with the model."""

    def adapter(self) -> Any:
        """A trained new->old head this term owns, as a fitted :class:`converters.base.Converter` (None for most
        terms): registered beside the model."""
        return None


REGISTRY: NamedRegistry[type[BaseLoss]] = NamedRegistry("loss")


def register_loss(name: str) -> Callable[[type[BaseLoss]], type[BaseLoss]]:
    return REGISTRY.register(name)


def list_losses() -> list[str]:
    return REGISTRY.names()


def create_loss(name: str, **kwargs: float) -> BaseLoss:
    """Build a loss by registered name.

    Raises:
        InvalidArgumentError: unknown name (lists the valid ones) or unknown keyword.
    """
    return REGISTRY.create(name, **kwargs)  # type: ignore[no-any-return]


def margin_cross_entropy(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """CosFace-style: ``CE(scale * (cos - margin * onehot(label)))``."""
    onehot = nn.functional.one_hot(labels, cos.shape[1]).to(cos.dtype)
    return nn.functional.cross_entropy(scale * (cos - margin * onehot), labels)


class CompositeLoss(nn.Module):
    """Weighted sum of named terms; returns the total and each term's value for logging."""

    def __init__(self, terms: dict[str, tuple[float, BaseLoss]]) -> None:
        super().__init__()
        if not terms:
            raise InvalidArgumentError("a composite loss needs at least one term")
        self.weights = {k: float(w) for k, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({k: loss for k, (_, loss) in terms.items()})

    @property
    def needs_old(self) -> bool:
        return any(getattr(t, "needs_old", False) for t in self.terms.values())

    @property
    def reads_feat(self) -> bool:
        return any(getattr(t, "reads_feat", False) for t in self.terms.values())

    def bind(self, emb_dim: int, old_dim: int | None) -> None:
        """:meth:`BaseLoss.bind` on every term (``old_dim`` None in plain training: no term reads the old space)."""
        if old_dim is None:
            return
        for term in self.terms.values():
            term.bind(emb_dim, old_dim)  # type: ignore[operator]

    def adapters(self) -> dict[str, Any]:
        """The trained heads the terms own (fitted converters), by term name."""
        out = {}
        for k, term in self.terms.items():
            head = term.adapter()  # type: ignore[operator]
            if head is not None:
                out[k] = head
        return out

    def forward(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total and each term's (detached) value; values stay on the device, so a training step
        never waits for the host."""
        total = torch.zeros((), device=inputs.emb.device)
        parts: dict[str, torch.Tensor] = {}
        for k, term in self.terms.items():
            v = term(inputs)
            parts[k] = v.detach()
            total = total + self.weights[k] * v
        return total, parts
