"""``train`` and ``export``."""

from __future__ import annotations

import click

from qdrant_compat.cli.context import CliState, pass_state
from qdrant_compat.errors import InvalidArgumentError


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _loss_weights(items: tuple[str, ...], default: dict[str, float]) -> dict[str, float]:
    if not items:
        return dict(default)
    out = {}
    for it in items:
        name, _, w = it.partition("=")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise InvalidArgumentError(f"--loss takes NAME or NAME=WEIGHT, got {it!r}") from None
    return out


@click.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Checkpoint folder to write.")
@click.option("--split", default="train", show_default=True, help="Split of an .npz bundle.")
@click.option("--max-classes", type=int, default=None, help="Use only the first N classes.")
@click.option("--backbone", default="smallcnn", show_default=True,
              help="smallcnn, efficientnet-lite0..4, or any torchvision classification model.")
@click.option("--weights", type=click.Path(exists=True), default=None, help="Local backbone state dict.")
@click.option("--freeze-backbone", is_flag=True, help="Train only the embedding head and classifier.")
@click.option("--dim", default=128, show_default=True)
@click.option("--head", type=click.Choice(["mlp", "linear"]), default="mlp", show_default=True)
@click.option("--size", default=64, show_default=True, help="Input size in pixels (square).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--mean", default=None, help="Comma-separated per-channel mean (default ImageNet / 0.5).")
@click.option("--std", default=None, help="Comma-separated per-channel std.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--old-model", default=None, help="NAME@VERSION: train backward-compatible with this frozen model.")
@click.option("--loss", "losses", multiple=True,
              help="NAME[=WEIGHT], repeatable (default: norm_softmax; with --old-model the BCT default).")
@click.option("--no-labels", is_flag=True, help="Label-free compatible training (with --old-model): the data's labels "
                                                "are ignored and never read.")
@click.option("--register", "register_as", default=None, help="Also export and register as NAME@VERSION.")
@pass_state
def train(state: CliState, data: str, out_dir: str, split: str, max_classes: int | None, backbone: str,
          weights: str | None, freeze_backbone: bool, dim: int, head: str, size: int, channels: str,
          mean: str | None, std: str | None, epochs: int, batch_size: int, lr: float, seed: int, device: str,
          old_model: str | None, losses: tuple[str, ...], no_labels: bool, register_as: str | None) -> None:
    """Train an embedding model on DATA (an image folder root/<class>/<image>, or an .npz bundle)."""
    from qdrant_compat.errors import require_torch

    require_torch("'train'")
    from qdrant_compat.cards import InputSpec, parse_ref
    from qdrant_compat.data.images import open_source
    from qdrant_compat.models import ModelConfig
    from qdrant_compat.training import (
        BCT_LOSSES,
        NOLABEL_LOSSES,
        PLAIN_LOSSES,
        TrainConfig,
        TrainingSummary,
        export_and_register,
        prepare_old_targets,
        save_checkpoint,
        train_model,
    )

    c = int(channels)
    default_mean, default_std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if c == 3 else ((0.5,), (0.5,))
    spec = InputSpec(size=size, channels=c, mean=_floats(mean, "--mean") if mean else default_mean,
                     std=_floats(std, "--std") if std else default_std)
    if register_as:
        parse_ref(register_as)
    src = open_source(data, split=split, max_classes=max_classes)
    if no_labels and not old_model:
        raise InvalidArgumentError("--no-labels trains a model compatible with an old one: name it with --old-model")
    old = None
    if old_model:
        old_reg = state.registry.get_model(old_model)
        old = prepare_old_targets(old_reg, src, labels=not no_labels)
    default = NOLABEL_LOSSES if no_labels else BCT_LOSSES if old_model else PLAIN_LOSSES
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, no_labels=no_labels,
                      losses=_loss_weights(losses, default))
    mcfg = ModelConfig(backbone=backbone, dim=dim, head=head, in_channels=c, freeze_backbone=freeze_backbone)
    steps = max(1, len(src) // batch_size) * epochs
    with state.progress("training", steps) as bar:
        res = train_model(src, mcfg, cfg, spec, old=old, weights=weights, progress=bar)
    from dataclasses import asdict

    summary = TrainingSummary(
        input=spec, classes=[] if no_labels else list(src.classes), config=asdict(cfg), history=res.history, seconds=res.seconds,
        parent=old.card.ref if old else None, parent_fingerprint=old.card.fingerprint if old else None,
        relation="bct" if old else None, synthesized_rows=len(old.synthesized) if old else 0, dataset=str(data),
    )
    save_checkpoint(out_dir, res.model, summary)
    out = {"checkpoint": out_dir, "images": len(src), "classes": len(src.classes), "epochs": epochs,
           "seconds": round(res.seconds, 2), "final": res.history[-1]}
    if register_as:
        name, version = parse_ref(register_as)
        card, diff = export_and_register(out_dir, state.registry, name, version)
        out.update(registered=card.ref, fingerprint=card.fingerprint, export_max_abs_diff=diff)
    state.emit(out, lambda: "\n".join(
        [f"trained {len(src)} images / {len(src.classes)} classes in {res.seconds:.1f}s "
         f"(train acc {res.history[-1]['train_acc']:.3f}) -> {out_dir}"]
        + ([f"registered {out['registered']} ({str(out['fingerprint'])[:12]}…)"] if register_as else [])))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True)
@click.option("--version", required=True)
@click.option("--onnx-out", type=click.Path(), default=None, help="Also keep the ONNX file here.")
@pass_state
def export(state: CliState, checkpoint: str, name: str, version: str, onnx_out: str | None) -> None:
    """Export CHECKPOINT to ONNX (parity-checked) and register it as NAME@VERSION."""
    from qdrant_compat.errors import require_torch

    require_torch("'export'")
    from qdrant_compat.training import export_and_register

    card, diff = export_and_register(checkpoint, state.registry, name, version, onnx_out=onnx_out)
    state.emit({"registered": card.ref, "fingerprint": card.fingerprint, "export_max_abs_diff": diff},
               f"registered {card.ref} ({card.fingerprint[:12]}…), ONNX parity max |diff| {diff:.1e}")


