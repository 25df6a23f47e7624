"""``model register|list|inspect``."""

from __future__ import annotations

from typing import Any

import click

from qdrant_compat.cli.context import CliState, pass_state


@click.group("model")
def model_group() -> None:
    """Registered model versions (ONNX + card)."""


@model_group.command("register")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--card", "card_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="model card JSON (name, version, dim, input, ...)")
@click.option("--classifier", type=click.Path(exists=True, dir_okay=False), default=None,
              help="classifier weights (.npy, shape (num_classes, dim))")
@pass_state
def register(state: CliState, onnx_file: str, card_file: str, classifier: str | None) -> None:
    """Register an ONNX extractor with its card (the fingerprint is computed here)."""
    from qdrant_compat.cards import ModelCard

    card = state.registry.register_model(onnx_file, ModelCard.load(card_file), classifier=classifier)
    state.emit(card.to_dict(), f"registered {card.ref} ({card.fingerprint[:12]}…)")


@model_group.command("list")
@pass_state
def list_models(state: CliState) -> None:
    """List registered models."""
    cards = state.registry.list_models()
    rows: list[dict[str, Any]] = [{"ref": c.ref, "dim": c.dim, "fingerprint": c.fingerprint, "parent": c.lineage.parent,
             "relation": c.lineage.relation} for c in cards]
    state.emit(rows, lambda: "\n".join(
        f"{r['ref']:<24} dim {r['dim']:<5} {r['fingerprint'][:12]}…"
        + (f"  <- {r['parent']} ({r['relation']})" if r["parent"] else "") for r in rows) or "no models registered")


@model_group.command("inspect")
@click.argument("ref")
@pass_state
def inspect(state: CliState, ref: str) -> None:
    """Show a model's card (verifying its fingerprint)."""
    import json

    m = state.registry.get_model(ref)
    d = m.card.to_dict()
    d["classes"] = f"{len(m.card.classes)} classes"
    state.emit({**m.card.to_dict(), "onnx": str(m.onnx_path), "has_classifier": m.classifier_path is not None},
               json.dumps(d, indent=2))


