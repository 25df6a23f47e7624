from __future__ import annotations

import torch

from qdrant_compat.losses.base import BaseLoss, LossInputs, margin_cross_entropy, register_loss


@register_loss("norm_softmax")
class NormSoftmaxLoss(BaseLoss):
    """The task loss: normalised-softmax cross-entropy with an additive cosine margin.

    Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018; with
    ``margin=0`` it is the NormFace loss (Wang et al., ACM MM 2017).
    """

    def __init__(self, scale: float = 16.0, margin: float = 0.1) -> None:
        super().__init__()
        self.scale, self.margin = float(scale), float(margin)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        return margin_cross_entropy(inputs.cos, inputs.labels, self.scale, self.margin)
