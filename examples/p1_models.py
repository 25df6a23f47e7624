"""Shared by the Tiny-ImageNet examples: registered P1 models (frozen EfficientNet-Lite + trained head).

Backbone features are computed once and cached (benchmarks/cache); heads train in seconds on them; each
model is exported as ONE ONNX file from image to vector (backbone + head) and registered with its card.
Needs the ``bench`` extra and the Tiny-ImageNet bundle (``--data DIR`` or ``QDRANT_COMPAT_DATA``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import LITE_SPEC, NEW_BACKBONE, OLD_BACKBONE, SEEN, backbone_features, data_dir, tiny_imagenet  # noqa: E402
from benchmarks.p1_bct import FeatureSource  # noqa: E402
from qdrant_compat import Registry  # noqa: E402
from qdrant_compat.models import ModelConfig  # noqa: E402
from qdrant_compat.training import (  # noqa: E402
    BCT_LOSSES,
    PLAIN_LOSSES,
    OldTargets,
    TrainConfig,
    TrainingSummary,
    build_old_targets,
    export_and_register,
    save_checkpoint,
    train_model,
)


def load(data: str | None):  # type: ignore[no-untyped-def]
    train, test = tiny_imagenet(data_dir(data))
    feats = {bb: {"train": backbone_features(bb, "train", train), "test": backbone_features(bb, "test", test)}
             for bb in (OLD_BACKBONE, NEW_BACKBONE)}
    return train, test, feats


def train_register(registry: Registry, work: Path, name: str, version: str, backbone: str, feats: np.ndarray,
                   labels: np.ndarray, classes: list[str], *, seed: int = 0, epochs: int = 30,
                   old: OldTargets | None = None):  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=epochs, batch_size=512, seed=seed, losses=dict(BCT_LOSSES if old else PLAIN_LOSSES))
    res = train_model(FeatureSource(labels, classes), ModelConfig(backbone=backbone, freeze_backbone=True),
                      cfg, LITE_SPEC, old=old, features=torch.from_numpy(feats))
    summary = TrainingSummary(input=LITE_SPEC, classes=classes, history=res.history, seconds=res.seconds,
                              parent=old.card.ref if old else None, parent_fingerprint=old.card.fingerprint if old else None,
                              relation="bct" if old else None, synthesized_rows=len(old.synthesized) if old else 0,
                              dataset="tinyimagenet100_dev")
    ck = save_checkpoint(work / f"ckpt-{name}-{version}", res.model, summary)
    card, diff = export_and_register(ck, registry, name, version)
    print(f"registered {card.ref}: {backbone} + head, {len(classes)} classes, {res.seconds:.0f}s, ONNX parity {diff:.1e}")
    return res.model


def old_targets(registry: Registry, ref: str, model, old_feats: np.ndarray, labels: np.ndarray,  # type: ignore[no-untyped-def]
                classes: list[str]) -> OldTargets:
    """The frozen old model's targets. Its embeddings of the training images come from its head on the
    cached backbone features: what its registered ONNX file computes from the images, without re-running
    the backbone (``prepare_old_targets`` runs the ONNX file when no cache exists)."""
    m = registry.get_model(ref)
    with torch.no_grad():
        emb = model.embed_features(torch.from_numpy(old_feats)).numpy()
    return build_old_targets(m.card, m.classifier_weight(), labels, classes, emb)


def top1_through_qdrant(client, collection: str, model: str, queries: np.ndarray, labels: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Leave-one-out top-1 through Qdrant: point ``i`` (id ``i``) queries the collection, skipping itself."""
    hits = client.query_batch(collection, model, queries, limit=2)
    return 100.0 * float(np.mean([labels[next(h.id for h in hs if h.id != i)] == labels[i] for i, hs in enumerate(hits)]))


__all__ = ["LITE_SPEC", "NEW_BACKBONE", "OLD_BACKBONE", "SEEN", "load", "old_targets", "top1_through_qdrant", "train_register"]
