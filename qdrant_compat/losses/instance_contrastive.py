from __future__ import annotations

import torch
from torch import nn

from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("instance_contrastive")
class InstanceContrastiveLoss(BaseLoss):
    """Label-free new-to-old contrastive loss: the new embedding of image ``i`` must find the *old* embedding
    of the same image among the batch's (and the bank's) old embeddings. InfoNCE (van den Oord et al. 2018)
    across models, the instance-level form of the cross-model terms of compatible learning; it reads no label.
    """

    needs_old = True

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        inputs.need_old("instance_contrastive")
        _, _, sim = inputs.cross_similarity()
        target = torch.arange(len(sim), device=sim.device)
        return nn.functional.cross_entropy(sim / self.temperature, target)
