from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("predictor")
class PredictorLoss(BaseLoss):
    """A new->old predictor head trained jointly with the new model (CaSSLe, Fini et al., CVPR 2022).

    The head ``g`` maps the new embedding into the old space, where ``g(new(x_i))`` must meet the frozen old
    embedding of the same image: point-wise (``1 - cos``) and, with ``contrast`` > 0, among the batch's (and the
    bank's) old embeddings (InfoNCE). The new embedding itself is not asked to *be* old; the head carries the
    difference, so the new space keeps its own geometry while staying translatable. The trained head is
    :meth:`adapter`: an ``mlp`` new->old converter (:class:`converters.mlp.MLPConverter`, whose module the head is)
    that :func:`~qdrant_compat.training.pipeline.train_and_register` registers beside the model, so new queries can
    search the old gallery through it. Reads no label.

    Options: ``hidden`` width and ``depth`` of the head's MLP branch, ``contrast`` weight, ``temperature``.
    """

    needs_old = True

    def __init__(self, hidden: float = 512, depth: float = 1, contrast: float = 1.0, temperature: float = 0.05) -> None:
        super().__init__()
        if hidden < 1 or depth < 0 or contrast < 0 or temperature <= 0:
            raise InvalidArgumentError(f"predictor options: hidden >= 1, depth >= 0, contrast >= 0, temperature > 0; got "
                                       f"hidden={hidden}, depth={depth}, contrast={contrast}, temperature={temperature}")
        self.hidden, self.depth = int(hidden), int(depth)
        self.contrast, self.temperature = float(contrast), float(temperature)
        self.head: nn.Module | None = None
        self._converter: Any = None

    def bind(self, emb_dim: int, old_dim: int) -> None:
        from converters import create_converter

        self._converter = create_converter("mlp", dim_in=emb_dim, dim_out=old_dim, hidden=self.hidden, depth=self.depth)
        self.head = self._converter.module  # a submodule: optimised, moved and saved with the loss

    def adapter(self) -> Any:
        """The head as a fitted ``mlp`` converter (after training; None before :meth:`bind`)."""
        if self._converter is not None:
            self._converter.fitted = True  # its module is the head itself, trained in place
        return self._converter

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        old_emb, _ = inputs.need_old("predictor")
        if self.head is None:
            raise InvalidArgumentError("the predictor loss has no head yet: the trainer binds it to the embedding "
                                       "dimensions before the first step (CompositeLoss.bind)")
        p = self.head(inputs.emb)
        loss = (1.0 - (p * old_emb).sum(dim=1)).mean()
        if self.contrast > 0:
            keys = old_emb if inputs.bank_emb is None else torch.cat([old_emb, inputs.bank_emb])
            target = torch.arange(len(p), device=p.device)
            loss = loss + self.contrast * nn.functional.cross_entropy(p @ keys.t() / self.temperature, target)
        return loss
