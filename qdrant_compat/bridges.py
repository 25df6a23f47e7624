"""Fit transformation heads between registered models and register them as converters."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.cards import ConverterCard, check_name
from qdrant_compat.data.splits import per_class_holdout
from qdrant_compat.enums import Direction
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.registry import Registry

log = logging.getLogger(__name__)


def paired_embeddings(registry: Registry, source: str, target: str, images: Any, *,
                      cache: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Run both registered models over the same images: row i of each embeds image i (``cache``: a
    :class:`~qdrant_compat.runtime.cache.VectorCache` that earlier runs of the same models filled)."""
    from qdrant_compat.runtime.embedder import Embedder

    a = Embedder(registry.get_model(source)).embed_source(images, cache=cache)
    b = Embedder(registry.get_model(target)).embed_source(images, cache=cache)
    return a, b


def retention(conv: Any, src: np.ndarray, dst: np.ndarray, labels: np.ndarray, direction: str) -> dict[str, float]:
    """Retrieval retention on held-out pairs, as in the benchmark's cells.

    ``old_to_new``: ``target/convert(source)`` vs ``target/target``; ``new_to_old``:
    ``convert(source)/target`` vs ``target/target`` (the old model's own figure), i.e. the adapter gain.
    """
    from qdrant_compat.evaluation import evaluate_pair

    conv_src = conv.transform(src)
    base = evaluate_pair(dst, dst, labels)
    cross = evaluate_pair(dst, conv_src, labels) if direction == "old_to_new" else evaluate_pair(conv_src, dst, labels)
    return {"top1": cross["top1"], "mAP": cross["mAP"], "base_top1": base["top1"], "base_mAP": base["mAP"],
            "top1_retention": cross["top1"] / base["top1"] if base["top1"] else float("nan"),
            "mAP_retention": cross["mAP"] / base["mAP"] if base["mAP"] else float("nan")}


def classifier_labels(labels: np.ndarray, class_names: list[str], classifier_classes: list[str]) -> np.ndarray:
    """Map data labels to rows of a classifier by class name; ``-1`` for classes the classifier does not know."""
    row = {c: i for i, c in enumerate(classifier_classes)}
    lut = np.asarray([row.get(c, -1) for c in class_names], dtype=np.int64)
    return lut[np.asarray(labels, dtype=np.int64)]


def converter_id(source: Any, target: Any, what: str) -> str:
    """The default id of a head from ``source``'s space to ``target``'s (model cards), ``what`` its kind or term."""
    return f"{source.name}-{source.version}-to-{target.name}-{target.version}-{what}"


def fit_head(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    *,
    direction: str = "old_to_new",
    labels: np.ndarray | None = None,
    target_classifier: np.ndarray | None = None,
    classifier_rows: np.ndarray | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    holdout: float = 0.1,
) -> tuple[Any, dict[str, Any]]:
    """Fit a ``kind`` head on paired embeddings; the one fitting path of the CLI, the library and the benchmarks.

    Args:
        labels: class of each pair (retention on the held-out share).
        target_classifier: the target model's frozen classifier rows ``(classes, dim_out)``, for heads that take
            ``class_weight``.
        classifier_rows: each pair's row of ``target_classifier`` (-1: a class it does not know); default
            ``labels``.
        options: head options; an unknown option, or one that cannot take effect, is an error.

    Returns:
        the fitted converter and its ``fit`` record (cosines, timing, held-out retention, calibration).
    """
    from converters import create_converter

    if len(src) != len(dst):
        raise InvalidArgumentError(f"{len(src)} source but {len(dst)} target embeddings: they must be paired")
    direction = Direction.parse(direction, "direction").value
    rng = np.random.default_rng(seed)
    hold = per_class_holdout(np.asarray(labels), holdout, rng) if labels is not None else np.empty(0, dtype=np.int64)
    fit_idx = np.setdiff1d(np.arange(len(src)), hold)
    n_hold = len(hold)
    conv = create_converter(kind, dim_in=src.shape[1], dim_out=dst.shape[1], **(options or {}))
    cls_labels = None
    rows = classifier_rows if classifier_rows is not None else labels
    if rows is not None and target_classifier is not None:
        cls_labels = np.asarray(rows)[fit_idx]
    rep = conv.fit(src[fit_idx], dst[fit_idx], seed=seed, labels=cls_labels,
                   target_classifier=target_classifier if cls_labels is not None else None)
    fit: dict[str, Any] = {"val_cosine": rep.val_cosine, "train_cosine": rep.train_cosine, "seconds": rep.seconds,
                           "n_train": rep.n_train, "seed": seed, **rep.extra}
    if labels is not None and n_hold >= 10:
        ret_labels = np.asarray(labels)[hold]
        fit["holdout"] = retention(conv, src[hold], dst[hold], ret_labels, direction)
        fit["holdout"]["measured_on"] = (f"{n_hold} held-out pairs of {len(np.unique(ret_labels))} classes (never fitted), "
                                         "leave-one-out top-1 as evaluate computes it")
    if direction == Direction.NEW_TO_OLD and n_hold >= 20:
        from qdrant_compat.evaluation.calibration import fit_score_calibration

        # merging a partial fill: the query model's own scores vs the adapted query's scores on old vectors
        fit["score_calibration"] = fit_score_calibration(src[hold], src[hold], dst[hold], route_queries=conv.transform(src[hold]))
    return conv, fit


def fit_and_register(
    registry: Registry,
    source: str,
    target: str,
    kind: str,
    *,
    direction: str = "old_to_new",
    images: Any = None,
    src: np.ndarray | None = None,
    dst: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
    conv_id: str | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    holdout: float = 0.1,
    cache: Any = None,
    eval_images: Any = None,
) -> ConverterCard:
    """Fit a ``kind`` head from ``source`` to ``target`` space, export it (parity-checked) and register it.

    Pairs come from ``images`` (both models are run; labels and class names from the image set) or from
    ``src``/``dst`` arrays. With labels, a held-out ``holdout`` share of the pairs (never used for fitting)
    measures retrieval retention. A head option ``class_weight`` > 0 adds the classification term through
    the target model's registered classifier, the data's classes matched to its classes by name.
    ``eval_images``: a separate labelled set on which retention is also measured (``fit["eval"]``).
    """
    s_card, t_card = registry.get_model(source).card, registry.get_model(target).card
    if images is not None:
        src, dst = paired_embeddings(registry, source, target, images, cache=cache)
        labels = np.asarray(images.labels) if labels is None else labels
        class_names = list(images.classes) if class_names is None else class_names
    if src is None or dst is None:
        raise InvalidArgumentError("fit needs images, or paired src and dst embeddings")
    conv_id = check_name(conv_id or converter_id(s_card, t_card, kind), "converter id")
    classifier = None
    cls_labels = None
    if float((options or {}).get("class_weight", 0.0) or 0.0) > 0:
        classifier = registry.get_model(target).classifier_weight()
        if classifier is None:
            raise InvalidArgumentError(f"option class_weight needs the classifier of {t_card.ref}, which was registered "
                                       "without one (register it with --classifier)")
        if labels is None or class_names is None:
            raise InvalidArgumentError("option class_weight needs labelled pairs: fit from a labelled image set")
        cls_labels = classifier_labels(labels, class_names, list(t_card.classes))
        known = int((cls_labels >= 0).sum())
        if known == 0:
            raise InvalidArgumentError(f"option class_weight: none of the data's classes is one of {t_card.ref}'s "
                                       f"{len(t_card.classes)} classes (matched by name)")
        log.info("classification term: %d of %d pairs have a class %s knows", known, len(cls_labels), t_card.ref)
    conv, fit = fit_head(kind, src, dst, direction=direction, labels=labels, target_classifier=classifier,
                         classifier_rows=cls_labels, seed=seed, options=options, holdout=holdout)
    if cls_labels is not None:
        fit["class_term"] = {"classifier": t_card.ref, "pairs_with_known_class": int((cls_labels >= 0).sum())}
    if eval_images is not None:
        e_src, e_dst = paired_embeddings(registry, source, target, eval_images, cache=cache)
        fit["eval"] = retention(conv, e_src, e_dst, np.asarray(eval_images.labels), fit.get("direction", direction))
        fit["eval"]["measured_on"] = (f"{len(e_src)} images of {len(eval_images.classes)} classes of the evaluation set, "
                                      "leave-one-out top-1 as evaluate computes it")
    card = register_head(registry, conv, source=source, target=target, direction=direction, conv_id=conv_id, fit=fit)
    log.info("fitted %s converter %s: val cosine %.3f", kind, conv_id, fit["val_cosine"])
    return card


def register_head(registry: Registry, conv: Any, *, source: str, target: str, direction: str, conv_id: str,
                  fit: dict[str, Any]) -> ConverterCard:
    """Export a fitted head to ONNX (parity-checked), save its weights and register it as converter ``conv_id``;
    the one way a head enters the registry (``converter fit``, and the predictor head ``train`` learns jointly)."""
    s_card, t_card = registry.get_model(source).card, registry.get_model(target).card
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "converter.onnx"
        fit["export_max_abs_diff"] = conv.to_onnx(onnx_path, {"qdrant_compat.converter": conv_id,
                                                              "qdrant_compat.source": source,
                                                              "qdrant_compat.target": target})
        head = conv.save(Path(tmp) / "head")
        card = ConverterCard(id=conv_id, kind=conv.kind, source=s_card.ref, source_fingerprint=s_card.fingerprint,
                             target=t_card.ref, target_fingerprint=t_card.fingerprint,
                             direction=Direction.parse(direction, "direction").value, dim_in=s_card.dim,
                             dim_out=t_card.dim, fit=fit)
        return registry.register_converter(onnx_path, head, card)
