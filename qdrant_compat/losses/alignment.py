from __future__ import annotations

import torch

from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("alignment")
class AlignmentLoss(BaseLoss):
    """Feature alignment: ``mean(1 - cos(new(x), old(x)))`` over the batch (L2 on unit vectors / 2).

    The plain "feature distillation" baseline of compatible training (e.g. Ramanujan et al., FCT, 2022;
    Meng et al., LCE, 2021 use it as a reference).
    """

    needs_old = True

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        old_emb, _ = inputs.need_old("alignment")
        return (1.0 - (inputs.emb_in_old_space() * old_emb).sum(dim=1)).mean()
