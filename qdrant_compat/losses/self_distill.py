from __future__ import annotations

import torch
from torch import nn

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("self_distill")
class SelfRelationalDistillationLoss(BaseLoss):
    """Keeps the new backbone's own neighbourhood structure without labels: the new embedding's ranking of
    the batch imitates the ranking given by the new backbone's features, ``KL(p_feat || p_emb)`` over the
    batch with self excluded. Relational knowledge distillation (Park et al., CVPR 2019) with the backbone
    as its own teacher; it stops the label-free cross-model term from collapsing the new space onto the old.
    """

    reads_feat = True

    def __init__(self, temperature: float = 0.1, teacher_temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature, self.teacher_temperature = float(temperature), float(teacher_temperature)

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        if inputs.feat is None:
            raise InvalidArgumentError("loss 'self_distill' needs the backbone's features of the batch")
        n = len(inputs.emb)
        eye = torch.eye(n, dtype=torch.bool, device=inputs.emb.device)
        with torch.no_grad():
            f = nn.functional.normalize(inputs.feat.flatten(1).float(), dim=1)
            log_p = nn.functional.log_softmax((f @ f.t() / self.teacher_temperature).masked_fill(eye, -1e9), dim=1)
            p = log_p.exp()
        log_q = nn.functional.log_softmax((inputs.emb @ inputs.emb.t() / self.temperature).masked_fill(eye, -1e9), dim=1)
        return (p * (log_p - log_q)).sum(dim=1).mean()
