"""Training: plain extractors and backward-compatible ones (the old model frozen behind ONNX)."""

from qdrant_compat.errors import require_extra

require_extra("train", "torch", "torchvision", feature="qdrant_compat.training")


from qdrant_compat.training.config import BCT_LOSSES, NOLABEL_LOSSES, PLAIN_LOSSES, TrainConfig  # noqa: E402
from qdrant_compat.training.data import AUGMENTS, Augment  # noqa: E402
from qdrant_compat.training.old_model import (  # noqa: E402
    OldTargets,
    SameViewOld,
    build_old_targets,
    prepare_old_targets,
    synthesize_rows,
    unlabelled_old_targets,
)
from qdrant_compat.training.pipeline import Trained, default_losses, train_and_register  # noqa: E402
from qdrant_compat.training.trainer import StepReport, TrainResult, compute_features, train_model  # noqa: E402

__all__ = [
    "BCT_LOSSES",
    "NOLABEL_LOSSES",
    "PLAIN_LOSSES",
    "AUGMENTS",
    "Augment",
    "OldTargets",
    "SameViewOld",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "Trained",
    "default_losses",
    "train_and_register",
    "build_old_targets",
    "compute_features",
    "prepare_old_targets",
    "synthesize_rows",
    "unlabelled_old_targets",
    "train_model",
]

from qdrant_compat.training.checkpoint import (  # noqa: E402
    TrainingSummary,
    export_and_register,
    load_checkpoint,
    save_checkpoint,
)

__all__ += ["TrainingSummary", "export_and_register", "load_checkpoint", "save_checkpoint"]
