"""A trained model on disk: ``config.json`` + ``model.safetensors`` + ``training.json`` (what a card needs)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qdrant_compat._config import from_dict, read_json, to_dict
from qdrant_compat.cards import InputSpec, Lineage, ModelCard
from qdrant_compat.models.embedding import EmbeddingModel
from qdrant_compat.registry import Registry


@dataclass
class TrainingSummary:
    input: InputSpec
    classes: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    parent: str | None = None
    parent_fingerprint: str | None = None
    relation: str | None = None
    synthesized_rows: int = 0
    dataset: str = ""
    skipped: int = 0  # training images that could not be read
    init_from: str | None = None  # the registered model whose backbone v2 started from
    gate: dict[str, Any] | None = None  # compatibility measured while training (training/gate.py)


def save_checkpoint(directory: str | Path, model: EmbeddingModel, summary: TrainingSummary) -> Path:
    d = model.save(directory)
    (d / "training.json").write_text(json.dumps(to_dict(summary), indent=2))
    return d


def load_checkpoint(directory: str | Path) -> tuple[EmbeddingModel, TrainingSummary]:
    d = Path(directory)
    model = EmbeddingModel.load(d)
    raw = read_json(d / "training.json", f"{d} has no training.json (not a qdrant-compat checkpoint)")
    return model, from_dict(TrainingSummary, raw, where=str(d / "training.json"))


def export_and_register(
    checkpoint: str | Path, registry: Registry, name: str, version: str, *, onnx_out: str | Path | None = None
) -> tuple[ModelCard, float]:
    """Export a checkpoint to ONNX (parity-checked) and register it with its card and classifier.

    Returns the registered card and the export's max abs difference vs torch.
    """
    from qdrant_compat.export.onnx import export_embedding_model

    model, summary = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_out) if onnx_out else Path(tmp) / "model.onnx"
        rep = export_embedding_model(model, summary.input, path, name=name, version=version)
        card = ModelCard(
            name=name,
            version=version,
            dim=model.config.dim,
            input=summary.input,
            classes=summary.classes,
            lineage=Lineage(parent=summary.parent, parent_fingerprint=summary.parent_fingerprint, relation=summary.relation),
            training={
                "model": asdict(model.config),
                "config": summary.config,
                "epochs": len(summary.history),
                "final": summary.history[-1] if summary.history else {},
                "history": summary.history,
                "skipped_images": summary.skipped,
                **({"init_from": summary.init_from} if summary.init_from else {}),
                **({"gate": summary.gate} if summary.gate else {}),
                "seconds": round(summary.seconds, 2),
                "synthesized_rows": summary.synthesized_rows,
                "dataset": summary.dataset,
                "export_max_abs_diff": rep.max_abs_diff,
            },
        )
        weight = model.classifier.weight.detach().cpu().numpy()
        card = registry.register_model(path, card, classifier=weight)
    return card, rep.max_abs_diff
