from __future__ import annotations

import torch
from torch import nn

from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("cross_contrastive")
class CrossModelContrastiveLoss(BaseLoss):
    """New-to-old supervised contrastive loss: each new embedding is a query, the batch's *old*
    embeddings are the gallery, same-class old embeddings are the positives.

    It optimises the very quantity the cross-model retrieval test measures (new query vs old gallery).
    In the spirit of the new-to-old contrastive terms of RACT (Zhang et al., "Hot-Refresh Model Upgrades
    with Regression-Alleviating Compatible Training", ICLR 2022) and LCE (Meng et al., 2021), with the
    multi-positive form of SupCon (Khosla et al., NeurIPS 2020). With a bank (``TrainConfig.bank_size``)
    the gallery side also holds old embeddings of other training images, closer to the real test.
    """

    needs_old = True

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        inputs.need_old("cross_contrastive")
        _, key_labels, sim = inputs.cross_similarity()
        pos = (inputs.labels[:, None] == key_labels[None, :]).to(sim.dtype)
        # mean log-probability of the positives = cross-entropy against the uniform distribution over them
        # (one fused log-softmax + reduction, forward and backward)
        return nn.functional.cross_entropy(inputs.scaled_similarity(self.temperature), pos / pos.sum(dim=1, keepdim=True))
