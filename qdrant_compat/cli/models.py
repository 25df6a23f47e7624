"""``model register|list|inspect``."""

from __future__ import annotations

from typing import Any

import click

from qdrant_compat.cards import DISTANCES
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
@click.option("--trust-evidence", is_flag=True,
              help="Act on the compatibility evidence the card's lineage claims (adopt, routing) as if measured here. "
                   "Without it the evidence is kept and shown, never acted on: measure it with 'evaluate --record'.")
@pass_state
def register(state: CliState, onnx_file: str, card_file: str, classifier: str | None, trust_evidence: bool) -> None:
    """Register an ONNX extractor with its card (the fingerprint is computed here)."""
    from qdrant_compat.cards import ModelCard

    card = state.registry.register_model(onnx_file, ModelCard.load(card_file), classifier=classifier,
                                         trust_evidence=trust_evidence)
    note = ""
    if card.lineage.evidence:
        note = ("; its compatibility evidence is trusted (--trust-evidence)" if trust_evidence else
                "; its card claims compatibility evidence this registry did not measure: shown, not acted on "
                "(measure it with 'evaluate --record', or register with --trust-evidence)")
    state.emit(card.to_dict(), f"registered {card.ref} ({card.fingerprint[:12]}…){note}")


@model_group.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Model name (the part before @ in NAME@VERSION).")
@click.option("--version", required=True, help="Model version (the part after @).")
@click.option("--arch", default=None, help="torchvision architecture, or timm:NAME (the timm extra): SOURCE is then its "
              "weights file (state dict).")
@click.option("--layer", default=None, help="With --arch: the layer whose (flattened) output is the embedding "
                                            "(default: pooled features, the classifier removed).")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Input size (read from the graph where it is fixed).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Input channels (read from the graph where fixed).")
@click.option("--mean", default=None, help="Comma-separated per-channel mean (default ImageNet / 0.5).")
@click.option("--std", default=None, help="Comma-separated per-channel std.")
@click.option("--distance", type=click.Choice(list(DISTANCES)), default="Cosine", show_default=True,
              help="Qdrant distance of the vectors this model makes.")
@click.option("--classifier", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The model's classifier: an .npz with 'weight' (n_classes, dim) and 'classes' (names). Compatible "
                   "training keeps these rows for the classes they name (without it every row is synthesised).")
@pass_state
def import_(state: CliState, source: str, name: str, version: str, arch: str | None, layer: str | None,
            size: int | None, channels: str | None, mean: str | None, std: str | None, distance: str,
            classifier: str | None) -> None:
    """Register a model trained elsewhere: an ONNX file, or (--arch) a torchvision network's local weights.

    The graph is run once on a probe batch: the output dimension is read from it and must be finite.
    """
    from qdrant_compat.cli.training import _floats
    from qdrant_compat.errors import InvalidArgumentError
    from qdrant_compat.importing import import_onnx, import_torchvision

    m = _floats(mean, "--mean") if mean else None
    sd = _floats(std, "--std") if std else None
    if arch:
        if size is None:
            raise InvalidArgumentError("--arch needs --size (the input size the network was trained at)")
        card = import_torchvision(state.registry, arch, source, name, version, size=size, channels=int(channels or 3),
                                  layer=layer, mean=m, std=sd, distance=distance, classifier=classifier)
    else:
        if layer:
            raise InvalidArgumentError("--layer goes with --arch; an ONNX file's embedding is its first output")
        card = import_onnx(state.registry, source, name, version, size=size, channels=int(channels) if channels else None,
                           mean=m, std=sd, distance=distance, classifier=classifier)
    state.emit(card.to_dict(), f"imported {card.ref}: {card.dim}-d, input {card.input.channels}x{card.input.size}x"
               f"{card.input.size}, mean {card.input.mean}, std {card.input.std} ({card.fingerprint[:12]}…)")


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
    origin = None
    if m.card.lineage.evidence:
        origin = "measured here (signed by this registry)" if state.registry.vouches_for(m.card) else \
            "not measured by this registry: shown, not acted on"
    state.emit({**m.card.to_dict(), "onnx": str(m.onnx_path), "has_classifier": m.classifier_path is not None,
                "evidence_origin": origin},
               json.dumps(d, indent=2) + (f"\nevidence: {origin}" if origin else ""))


