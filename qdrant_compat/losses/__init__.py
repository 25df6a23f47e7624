"""Training losses, one per file, behind :class:`BaseLoss`; build them by name with :func:`create_loss`."""

from qdrant_compat.errors import require_extra

require_extra("train", "torch", feature="qdrant_compat.losses")


from qdrant_compat.losses.alignment import AlignmentLoss  # noqa: E402
from qdrant_compat.losses.base import (  # noqa: E402
    BaseLoss,
    CompositeLoss,
    LossInputs,
    create_loss,
    list_losses,
    register_loss,
)
from qdrant_compat.losses.cross_contrastive import CrossModelContrastiveLoss  # noqa: E402
from qdrant_compat.losses.cross_distill import CrossModelDistillationLoss  # noqa: E402
from qdrant_compat.losses.influence import InfluenceLoss  # noqa: E402
from qdrant_compat.losses.instance_contrastive import InstanceContrastiveLoss  # noqa: E402
from qdrant_compat.losses.norm_softmax import NormSoftmaxLoss  # noqa: E402
from qdrant_compat.losses.predictor import PredictorLoss  # noqa: E402
from qdrant_compat.losses.self_distill import SelfRelationalDistillationLoss  # noqa: E402

__all__ = [
    "AlignmentLoss",
    "BaseLoss",
    "CompositeLoss",
    "CrossModelContrastiveLoss",
    "CrossModelDistillationLoss",
    "InfluenceLoss",
    "InstanceContrastiveLoss",
    "LossInputs",
    "NormSoftmaxLoss",
    "PredictorLoss",
    "SelfRelationalDistillationLoss",
    "create_loss",
    "list_losses",
    "register_loss",
]
