"""The frozen old model's side of backward-compatible training.

The old model is used only through its registered ONNX file, so it is frozen by construction and can
never be put in train mode by mistake. What it contributes is computed once, before training (and kept in
the vector cache for the next run): its embedding of every training image (for alignment / contrastive terms,
and the bank) and its classifier rows in the new label space, with synthesised rows (the old model's mean
normalised embedding of the class) for classes it never saw.

When the batches are augmented, the precomputed embeddings no longer describe the view the new model sees:
:class:`SameViewOld` runs the old ONNX graph on the very batch, each step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.registry import RegisteredModel

log = logging.getLogger(__name__)
SYNTHESIZE_MODES = ("missing", "all")


@dataclass
class OldTargets:
    card: ModelCard
    embeddings: np.ndarray  # (n_train, d_old), L2-normalised
    weight: np.ndarray  # (n_new_classes, d_old), L2-normalised
    synthesized: list[str]
    classes: list[str] = field(default_factory=list)  # the new label space, in order
    onnx_path: str | None = None  # the old model's graph, for same-view targets on augmented batches
    unreadable: list[int] = field(default_factory=list)  # training images that could not be read: left out


def _normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def synthesize_rows(old_emb: np.ndarray, labels: np.ndarray, num_classes: int, only: list[int] | None = None) -> np.ndarray:
    """Mean normalised old embedding per class, renormalised ``(num_classes, d_old)``.

    Args:
        only: the classes that need a row (others stay zero); default all.

    Raises:
        InvalidArgumentError: a needed class has no training image.
    """
    e = _normalize(old_emb)
    rows = np.zeros((num_classes, e.shape[1]), dtype=np.float32)
    counts = np.bincount(labels, minlength=num_classes)
    need = np.arange(num_classes) if only is None else np.asarray(only, dtype=np.int64)
    empty = need[counts[need] == 0] if len(need) else need
    if len(empty):
        raise InvalidArgumentError(f"cannot synthesise old-classifier rows for classes without images: {empty[:10].tolist()}")
    np.add.at(rows, labels, e)
    rows[need] = _normalize(rows[need] / counts[need, None])
    if only is not None:
        rows[np.setdiff1d(np.arange(num_classes), need)] = 0.0
    return rows


def build_old_targets(
    card: ModelCard,
    classifier: np.ndarray | None,
    labels: np.ndarray,
    classes: list[str],
    old_embeddings: np.ndarray,
    *,
    synthesize: str = "missing",
) -> OldTargets:
    """Assemble the old model's targets in the new label space from precomputed old embeddings.

    Args:
        card: the old model's card (its ``classes`` name the rows of ``classifier``).
        classifier: the old cosine-classifier rows ``(n_old_classes, d_old)``, or None.
        labels, classes: the new training set's labels and class names.
        old_embeddings: the old model's embedding of every training image ``(n, d_old)``.
        synthesize: ``"missing"`` synthesises rows only for classes the old classifier lacks; ``"all"``
            replaces every row by the class mean.
    """
    if synthesize not in SYNTHESIZE_MODES:
        raise InvalidArgumentError(f"synthesize must be one of {list(SYNTHESIZE_MODES)}, got {synthesize!r}")
    if old_embeddings.shape != (len(labels), card.dim):
        raise InvalidArgumentError(f"old embeddings must have shape ({len(labels)}, {card.dim}), got {old_embeddings.shape}")
    old_index = {c: i for i, c in enumerate(card.classes)}
    keep: dict[int, int] = {}
    if classifier is not None and synthesize == "missing":
        keep = {ci: old_index[c] for ci, c in enumerate(classes) if c in old_index and old_index[c] < len(classifier)}
    need = [ci for ci in range(len(classes)) if ci not in keep]
    weight = synthesize_rows(old_embeddings, labels, len(classes), only=need)
    for ci, oi in keep.items():
        weight[ci] = classifier[oi]  # type: ignore[index]
    weight = _normalize(weight)
    synthesized = [classes[ci] for ci in need]
    if classifier is None:
        log.info("old model %s has no classifier: every row is synthesised", card.ref)
    log.info("old classifier: %d kept rows, %d synthesised", len(classes) - len(synthesized), len(synthesized))
    return OldTargets(card=card, embeddings=_normalize(old_embeddings), weight=weight, synthesized=synthesized,
                      classes=list(classes))


def unlabelled_old_targets(card: ModelCard, old_embeddings: np.ndarray) -> OldTargets:
    """The old model's embeddings of the training images alone (label-free training reads no classifier rows)."""
    if old_embeddings.ndim != 2 or old_embeddings.shape[1] != card.dim:
        raise InvalidArgumentError(f"old embeddings must have shape (n, {card.dim}), got {old_embeddings.shape}")
    return OldTargets(card=card, embeddings=_normalize(old_embeddings), weight=np.zeros((1, card.dim), np.float32),
                      synthesized=[], classes=[])


def prepare_old_targets(old: RegisteredModel, source, *, synthesize: str = "missing", batch_size: int = 128,  # type: ignore[no-untyped-def]
                        labels: bool = True, cache=None) -> OldTargets:
    """Run the registered old ONNX model over ``source`` and build :class:`OldTargets` (``labels=False``:
    embeddings only, the source's labels are never read).

    Args:
        cache: a :class:`~qdrant_compat.runtime.cache.VectorCache`; images the same old model embedded before
            (in ``train``, ``evaluate`` or ``converter fit``) are read from it.
    """
    from qdrant_compat.runtime.embedder import Embedder

    log.info("embedding %d training images with the old model %s", len(source), old.card.ref)
    emb = Embedder(old, batch_size=batch_size).embed_source(source, cache=cache, unreadable="nan")
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        log.warning("%d training image(s) cannot be read; left out of training (first: %s)", len(bad), bad[:5].tolist())
    ok = np.setdiff1d(np.arange(len(emb)), bad)
    if not labels:
        out = unlabelled_old_targets(old.card, np.nan_to_num(emb))
    else:
        lab = np.asarray(source.labels)
        part = build_old_targets(old.card, old.classifier_weight(), lab[ok], list(source.classes), emb[ok],
                                 synthesize=synthesize)
        full = np.zeros_like(emb)
        full[ok] = part.embeddings
        part.embeddings = full
        out = part
    out.onnx_path = str(old.onnx_path)
    out.unreadable = [int(i) for i in bad]
    return out


class SameViewOld:
    """The old model's embedding of the exact batch the new model trains on (ONNX Runtime, CUDA when available).

    ``__call__(views)`` takes the batch as ``[0, 1]`` pixels ``(n, C, S, S)`` (on any device) and returns the
    old embeddings ``(n, d_old)``, L2-normalised, on the same device. When the new and old input specs agree
    (size and channels) the old model gets exactly the tensor the new model sees, up to its own mean/std; a
    different size is resized bilinearly (antialiased), a grey old model gets the channel mean.
    """

    def __init__(self, onnx_path: str, card: ModelCard, *, providers: list[str] | None = None) -> None:
        from qdrant_compat.runtime.onnx import ort_session

        self.card = card
        self._sess = ort_session(onnx_path, providers)
        self._in, self._out = self._sess.get_inputs()[0].name, self._sess.get_outputs()[0].name

    def old_input(self, views):  # type: ignore[no-untyped-def]
        import torch

        spec = self.card.input
        x = views
        if x.shape[1] != spec.channels:
            if spec.channels == 1:
                x = x.mean(1, keepdim=True)
            else:
                x = x.expand(-1, spec.channels, -1, -1)
        if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
            x = torch.nn.functional.interpolate(x, size=(spec.size, spec.size), mode="bilinear", antialias=True,
                                                align_corners=False)
        mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def __call__(self, views):  # type: ignore[no-untyped-def]
        import torch

        x = self.old_input(views.float()).detach().cpu().numpy()
        out = self._sess.run([self._out], {self._in: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return torch.from_numpy(_normalize(np.asarray(out, dtype=np.float32))).to(views.device)
