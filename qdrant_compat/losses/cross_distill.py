from __future__ import annotations

import torch
from torch import nn

from qdrant_compat.losses.base import BaseLoss, LossInputs, register_loss


@register_loss("cross_distill")
class CrossModelDistillationLoss(BaseLoss):
    """Relational distillation across models: the new query's ranking of the old gallery imitates the old
    query's ranking of it.

    For image ``i``, ``p_old = softmax(old(x_i) · K / t)`` and ``p_new = softmax(new(x_i) · K / t)`` over
    keys ``K`` = the batch's (and the bank's) old embeddings, self excluded; the loss is
    ``KL(p_old || p_new)``. Feature alignment asks the new embedding to *be* the old one; this asks only
    that it *see the old gallery the same way*, which is what old/old retrieval relies on. With
    ``only_seen`` it applies to images of classes the old model was trained on (where its neighbourhoods
    are worth copying). Relational distillation in the spirit of Park et al. (CVPR 2019) and of the
    neighbourhood-preserving terms of compatible-learning work (e.g. LCE, Meng et al. 2021).
    """

    needs_old = True

    def __init__(self, temperature: float = 0.05, only_seen: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.only_seen = float(temperature), bool(only_seen)
        self._mask: torch.Tensor | None = None

    def _self_mask(self, n: int, k: int, device: torch.device) -> torch.Tensor:
        """``(n, k)``, True where query ``i`` meets its own old embedding (key ``i``); kept between steps."""
        m = self._mask
        if m is None or m.shape != (n, k) or m.device != device:
            m = torch.zeros(n, k, dtype=torch.bool, device=device)
            m[torch.arange(n), torch.arange(n)] = True
            self._mask = m
        return m

    def compute(self, inputs: LossInputs) -> torch.Tensor:
        old_emb, _ = inputs.need_old("cross_distill")
        keys, _, _ = inputs.cross_similarity()
        self_mask = self._self_mask(len(old_emb), len(keys), keys.device)
        with torch.no_grad():  # the teacher: the old model's own ranking (no gradient flows there)
            log_p_old = nn.functional.log_softmax((old_emb @ keys.t() / self.temperature).masked_fill(self_mask, -1e9), dim=1)
            p_old = log_p_old.exp()
            neg_entropy = (p_old * log_p_old).sum(dim=1)  # the self column has p_old = 0 exactly
        student = inputs.scaled_similarity(self.temperature).masked_fill(self_mask, -1e9)
        # KL(p_old || p_new) = cross-entropy(p_old, p_new) - H(p_old): one fused log-softmax + reduction
        kl = nn.functional.cross_entropy(student, p_old, reduction="none") + neg_entropy
        if self.only_seen and inputs.seen_mask is not None:
            w = inputs.seen_mask.to(kl.dtype)
            return (kl * w).sum() / w.sum().clamp_min(1.0)
        return kl.mean()
