from __future__ import annotations

import torch

from qdrant_compat.losses.base import BaseLoss, LossInputs, margin_cross_entropy, register_loss


@register_loss("influence")
class InfluenceLoss(BaseLoss):
    """BCT's influence loss: the new embeddings classified by the *frozen old* classifier.

    Shen et al., "Towards Backward-Compatible Representation Learning", CVPR 2020. Classes unknown to the
    old model use synthesised rows (the old model's mean embedding of the class), prepared beforehand.
    A positive ``margin`` makes it the boundary-aware variant: the new embedding must sit inside the old
    class region with room to spare, not merely on the right side of its boundary (cf. AdvBCT, CVPR 2023).
    """

    needs_old = True

    def __init__(self, scale: float = 16.0, margin: float = 0.1) -> None:
        super().__init__()
        self.scale, self.margin = float(scale), float(margin)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        _, w_old = inputs.need_old("influence")
        cos = inputs.emb_in_old_space() @ w_old.t()
        return margin_cross_entropy(cos, inputs.labels, self.scale, self.margin)
