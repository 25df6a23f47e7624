"""Train, checkpoint, export and register in one call: what ``qdrant-compat train`` does, for Python users.

:func:`train_and_register` is the one path from training data to a registered model: the CLI's ``train`` parses
its options and calls it, and the README's Python walkthrough calls it directly. It prepares the frozen old
model's targets (once, on rank 0 under torchrun, shared as tensors), sets up the compatibility gate, trains
(:func:`~qdrant_compat.training.trainer.train_model`), writes the checkpoint with its
:class:`~qdrant_compat.training.checkpoint.TrainingSummary` (the card later records epochs, seconds and the gate),
and exports and registers the model when ``register_as`` is given.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.cards import InputSpec, ModelCard, parse_ref
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.models import ModelConfig
from qdrant_compat.registry import Registry
from qdrant_compat.training.checkpoint import TrainingSummary, export_and_register, save_checkpoint
from qdrant_compat.training.config import BCT_LOSSES, NOLABEL_LOSSES, PLAIN_LOSSES, TrainConfig
from qdrant_compat.training.distributed import Dist
from qdrant_compat.training.gate import GateConfig, GateResult
from qdrant_compat.training.old_model import OldTargets, prepare_old_targets
from qdrant_compat.training.trainer import EpochHook, LogHook, ProgressFn, TrainResult, train_model

log = logging.getLogger(__name__)


@dataclass(repr=False)
class Trained:
    """What :func:`train_and_register` produced."""

    checkpoint: Path
    result: TrainResult
    summary: TrainingSummary
    card: ModelCard | None = None  # the registered card, with ``register_as``
    converters: list[Any] = field(default_factory=list)  # new->old heads trained jointly (predictor), registered
    export_max_abs_diff: float | None = None  # ONNX vs torch on a probe batch

    @property
    def gate(self) -> GateResult | None:
        return self.result.gate

    @property
    def compatible(self) -> bool | None:
        """Whether the gate's criterion held (None: no gate ran)."""
        return None if self.result.gate is None else bool(self.result.gate.criterion_met)

    def __repr__(self) -> str:
        ref = self.card.ref if self.card else None
        return (f"Trained(checkpoint='{self.checkpoint}', registered={ref!r}, epochs={len(self.result.history)}, "
                f"seconds={self.result.seconds:.1f}, gate={self.result.gate.sentence() if self.result.gate else None!r})")


def default_losses(*, old: bool, no_labels: bool = False) -> dict[str, float]:
    """The loss weights ``train`` uses when none are given."""
    return dict(NOLABEL_LOSSES if no_labels else BCT_LOSSES if old else PLAIN_LOSSES)


def train_and_register(
    data: Any,
    out: str | Path,
    *,
    split: str = "train",
    registry: Registry,
    model: ModelConfig,
    config: TrainConfig,
    spec: InputSpec,
    old_model: str | None = None,
    register_as: str | None = None,
    gate: GateConfig | None = GateConfig(),
    gate_data: Any = None,
    gate_split: str = "test",
    max_classes: int | None = None,
    weights: str | None = None,
    init_from: str | None = None,
    cache: Any = None,
    dist: Dist | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    on_log: LogHook | None = None,
    on_epoch: EpochHook | None = None,
    dataset: str = "",
    announce: bool = True,
) -> Trained:
    """Train a model on ``data``, save a checkpoint in ``out``, and (with ``register_as``) export and register it.

    Args:
        data: the training images: a path (an image folder, an ``.npz`` bundle read at ``split``, an image list),
            opened with ``max_classes``, or an image source already opened.
        out: the checkpoint folder (resume states go there too).
        registry: where ``old_model`` is read and ``register_as`` written.
        model: the architecture; ``spec``: the input preprocessing the card records.
        config: optimisation and losses; with ``old_model`` and no explicit losses, use
            :func:`default_losses` ``(old=True)``.
        old_model: ``NAME@VERSION`` of the frozen old model to stay compatible with (Backward Compatible Training).
        gate: the compatibility gate (with ``old_model`` and labels); None turns it off.
        gate_data: a labelled image set neither model trains on (a path, opened with ``gate_split`` and
            ``max_classes``, or an open source) for the gate; None holds out ``gate.holdout`` of ``data``.
        cache: a :class:`~qdrant_compat.runtime.cache.VectorCache` for the old model's embeddings.
        dist: torchrun processes (:meth:`Dist.from_env`); only rank 0 writes, exports and registers.
        dataset: what the card records as the training data (default: ``data`` when it is a path).
        announce: log the gate's sentence (a warning when the criterion failed); the CLI prints it itself.

    Returns:
        :class:`Trained`; ``trained.gate.sentence()`` says whether the criterion held.

    Raises:
        InvalidArgumentError: ``gate_data`` is the training data itself, or ``register_as`` is not NAME@VERSION.
    """
    from qdrant_compat.data.sources import open_source
    from qdrant_compat.training.config import resolve_device

    dist = dist or Dist.from_env(resolve_device(config.device))
    if isinstance(data, (str, Path)):
        dataset = dataset or str(data)
        data = open_source(data, split=split, max_classes=max_classes)
    if register_as:
        parse_ref(register_as)
    if config.no_labels and not old_model:
        raise InvalidArgumentError("label-free training (--no-labels) trains a model compatible with an old one: "
                                   "name it with --old-model")
    out = Path(out)
    old = None
    if old_model:
        old_reg = registry.get_model(old_model)
        old = prepare_old_targets(old_reg, data, labels=not config.no_labels, cache=cache) if dist.is_main else None
        old = _share_old(dist, old, old_reg, data, not config.no_labels)
    gate = gate if old is not None and not config.no_labels else None
    gate_set = _gate_set(registry, dataset, split, old, gate_data, gate_split, max_classes, dist, cache) if gate else None
    res = train_model(data, model, config, spec, old=old, weights=weights, progress=progress, on_log=on_log,
                      on_epoch=on_epoch, out_dir=str(out), resume=resume, cache=cache, dist=dist, gate=gate,
                      gate_data=gate_set)
    summary = TrainingSummary(
        input=spec, classes=[] if config.no_labels else list(data.classes), config=asdict(config),
        history=res.history, seconds=res.seconds, parent=old.card.ref if old else None,
        parent_fingerprint=old.card.fingerprint if old else None, relation="bct" if old else None,
        synthesized_rows=len(old.synthesized) if old else 0, dataset=dataset,
        skipped=len(res.skipped), init_from=init_from, gate=res.gate.to_dict() if res.gate else None,
    )
    trained = Trained(checkpoint=out, result=res, summary=summary)
    if not dist.is_main:
        return trained
    save_checkpoint(out, res.model, summary)
    for term, conv in res.adapters.items():
        conv.save(out / f"adapter-{term}")
    from qdrant_compat.training.resume import remove_state

    remove_state(out)
    if res.gate is not None and announce:
        log.log(logging.INFO if res.gate.criterion_met else logging.WARNING, "%s", res.gate.sentence())
    if register_as:
        name, version = parse_ref(register_as)
        trained.card, trained.export_max_abs_diff = export_and_register(out, registry, name, version)
        if old is not None:
            trained.converters = _register_adapters(registry, res, trained.card, old.card, config)
    return trained


def _register_adapters(registry: Registry, res: TrainResult, card: ModelCard, old: ModelCard,
                       config: TrainConfig) -> list[Any]:
    """Each head a loss term trained jointly (the predictor), registered as a new->old converter of the new model."""
    from qdrant_compat.bridges import converter_id, register_head

    out = []
    for term, conv in res.adapters.items():
        fit = {"trained_jointly": {"loss": term, "weight": config.losses.get(term), "epochs": len(res.history),
                                   "options": config.loss_options.get(term, {})},
               "final_loss": res.history[-1].get(term) if res.history else None, "seed": config.seed}
        conv_id = converter_id(card, old, term)
        out.append(register_head(registry, conv, source=card.ref, target=old.ref, direction="new_to_old",
                                 conv_id=conv_id, fit=fit))
        log.info("registered the jointly trained %s head as converter %s (%s -> %s)", term, conv_id, card.ref, old.ref)
    return out


def _gate_set(registry: Registry, dataset: str, split: str, old: OldTargets | None, gate_data: Any, gate_split: str,
              max_classes: int | None, dist: Dist, cache: Any) -> tuple[Any, np.ndarray] | None:
    """``(gate set, the old model's embeddings of it)``; None to hold out training images (with a warning when the
    old model was trained on this very data: old/old then reads high on those images)."""
    from qdrant_compat.data.sources import open_source

    assert old is not None
    if gate_data is None:
        if dataset and str(old.card.training.get("dataset", "")) == dataset:
            log.warning("the gate holds out images of %s, which %s was trained on: its old/old figure on them reads "
                        "high (it has seen them); pass gate data (--gate-data) with images neither model trains on "
                        "for a fair criterion", dataset, old.card.ref)
        return None
    if isinstance(gate_data, (str, Path)):
        same_split = Path(gate_data).suffix != ".npz" or gate_split == split
        if dataset and Path(gate_data).resolve() == Path(dataset).resolve() and same_split:
            raise InvalidArgumentError("--gate-data is the training data itself: the gate needs images the new model "
                                       "does not train on (another split or folder), or leave --gate-data out to hold "
                                       "some out")
        gate_data = open_source(gate_data, split=gate_split, max_classes=max_classes)
    emb = None
    if dist.is_main:
        from qdrant_compat.runtime.embedder import Embedder

        emb = Embedder(registry.get_model(old.card.ref)).embed_source(gate_data, cache=cache)
    return gate_data, dist.broadcast_array(emb)


def _share_old(dist: Dist, old: OldTargets | None, old_reg: Any, src: Any, labels: bool) -> OldTargets:
    """Rank 0's old-model targets on every rank (computed once, sent as tensors: nothing is pickled)."""
    if not dist.enabled:
        assert old is not None
        return old
    main = dist.is_main
    classes = list(src.classes) if labels else []
    emb = dist.broadcast_array(old.embeddings if main and old else None)
    weight = dist.broadcast_array(old.weight if main and old else None)
    synth = dist.broadcast_array(np.asarray([[float(c in set(old.synthesized))] for c in classes] or [[0.0]], np.float32)
                                 if main and old else None)
    bad = dist.broadcast_array(np.asarray([[i] for i in old.unreadable] or [[-1]], np.float32) if main and old else None)
    if main:
        assert old is not None
        return old
    return OldTargets(card=old_reg.card, embeddings=emb, weight=weight,
                      synthesized=[c for c, s in zip(classes, synth[:, 0], strict=False) if s > 0.5], classes=classes,
                      onnx_path=str(old_reg.onnx_path), unreadable=[int(i) for i in bad[:, 0] if i >= 0])
