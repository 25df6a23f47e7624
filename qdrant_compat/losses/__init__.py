"""Training losses, one per file, behind :class:`BaseLoss`; build them by name with :func:`create_loss`."""

from qdrant_compat.losses.alignment import AlignmentLoss
from qdrant_compat.losses.base import (
    BaseLoss,
    CompositeLoss,
    LossInputs,
    create_loss,
    list_losses,
    register_loss,
)
from qdrant_compat.losses.cross_contrastive import CrossModelContrastiveLoss
from qdrant_compat.losses.cross_distill import CrossModelDistillationLoss
from qdrant_compat.losses.influence import InfluenceLoss
from qdrant_compat.losses.norm_softmax import NormSoftmaxLoss

__all__ = [
    "AlignmentLoss",
    "BaseLoss",
    "CompositeLoss",
    "CrossModelContrastiveLoss",
    "CrossModelDistillationLoss",
    "InfluenceLoss",
    "LossInputs",
    "NormSoftmaxLoss",
    "create_loss",
    "list_losses",
    "register_loss",
]
