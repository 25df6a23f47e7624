"""Cross-model evaluation of *registered* models (and adapters) on a labelled image set."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.evaluation.crossmodel import CompatibilityReport, evaluate_pair
from qdrant_compat.registry import Registry


def evaluate_registered(
    registry: Registry,
    refs: list[str],
    images: Any,
    *,
    seen_classes: set[int] | None = None,
    adapters: list[str] | None = None,
    cache: Any = None,
) -> tuple[CompatibilityReport, dict[str, np.ndarray]]:
    """Every query x gallery cell of equal dimension among ``refs``, leave-one-out on ``images``.

    ``adapters`` (converter ids) add cells ``adapt:<kind>(<src>)/<dst>`` (new->old) or
    ``<dst>/convert:<kind>(<src>)`` (old->new). ``cache``: a :class:`~qdrant_compat.runtime.cache.VectorCache`
    (the embeddings ``train`` and earlier evaluations made of the same images are read, not recomputed).
    """
    from qdrant_compat.runtime.embedder import Embedder

    labels = np.asarray(images.labels)
    emb = {ref: Embedder(registry.get_model(ref)).embed_source(images, cache=cache) for ref in refs}
    rep = CompatibilityReport()
    for q in refs:
        for g in refs:
            if emb[q].shape[1] == emb[g].shape[1]:
                rep.cells[f"{q}/{g}"] = evaluate_pair(emb[q], emb[g], labels, seen_classes=seen_classes)
    from qdrant_compat.runtime.onnx import ConverterRuntime

    runtime = ConverterRuntime(registry)
    for cid in adapters or []:
        c = registry.get_converter(cid).card
        if c.source not in emb or c.target not in emb:
            from qdrant_compat.errors import InvalidArgumentError

            raise InvalidArgumentError(f"adapter {cid} maps {c.source} -> {c.target}; evaluate it with --model {c.source} "
                                       f"--model {c.target} (models given: {', '.join(refs)})")
        moved = runtime.apply(cid, emb[c.source])
        if c.direction == "new_to_old":
            rep.cells[f"adapt:{c.kind}({c.source})/{c.target}"] = evaluate_pair(moved, emb[c.target], labels,
                                                                                seen_classes=seen_classes)
        else:
            rep.cells[f"{c.target}/convert:{c.kind}({c.source})"] = evaluate_pair(emb[c.target], moved, labels,
                                                                                  seen_classes=seen_classes)
    return rep, emb


def record_bct_evidence(registry: Registry, new: str, rep: CompatibilityReport,
                        embeddings: dict[str, np.ndarray] | None = None) -> ModelCard:
    """Write the measured figures of ``new`` vs its parent into ``new``'s card lineage.

    With the evaluation's ``embeddings`` (as returned by :func:`evaluate_registered`), also the score
    calibration a partial-fill search uses to merge new/new and new/old scores fairly.
    """
    from qdrant_compat.errors import InvalidArgumentError

    card = registry.get_model(new).card
    old = card.lineage.parent
    if card.lineage.relation != "bct" or old is None:
        raise InvalidArgumentError(f"{new} was not trained backward-compatibly (its card names no bct parent)")
    need = [f"{old}/{old}", f"{new}/{old}"]
    missing = [c for c in need if c not in rep.cells]
    if missing:
        raise InvalidArgumentError(f"recording evidence for {new} needs the cells {need}; evaluate both models together")
    d = rep.derived(old=old, new=new)
    d.update(metric="top1", cells={c: rep.cells[c] for c in [*need, f"{new}/{new}"] if c in rep.cells})
    if embeddings is not None and new in embeddings and old in embeddings:
        from qdrant_compat.evaluation.calibration import fit_score_calibration

        d["score_calibration"] = fit_score_calibration(embeddings[new], embeddings[new], embeddings[old])
    if not d.get("criterion_met"):
        import logging

        logging.getLogger(__name__).warning(
            "%s fails the compatibility criterion against %s (cross top-1 %.1f vs old/old %.1f): recorded as a failing "
            "edge; it will not be adopted", new, old, float(d.get("cross_top1", float("nan"))), float(d.get("old_top1", float("nan"))))
    card = card.with_(lineage=replace(card.lineage, evidence=registry.sign_evidence(card, d)))  # measured here
    registry.update_card(card)
    return card
