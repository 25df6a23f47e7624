"""``train`` and ``export``."""

from __future__ import annotations

from typing import Any

import click

from qdrant_compat.cli.context import CliState, FiniteRange, cache_options, pass_state
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


ARGS_FILE = "train_args.json"


def _init_from(registry, ref: str, weights: str | None, scratch: str):  # type: ignore[no-untyped-def]
    """``--init-from NAME@VERSION``: the backbone (and input spec) of a registered model as v2's starting point.

    An imported torchvision/timm model is rebuilt from its architecture and its weights file (``--weights``,
    checked against the sha256 the card recorded); a model trained here from its checkpoint folder
    (``--weights CKPT``)."""
    from pathlib import Path

    from qdrant_compat.importing import sha256_file

    card = registry.get_model(ref).card
    imported = card.training.get("imported") or {}
    if imported.get("from") in ("torchvision", "timm"):
        if imported.get("layer") not in (None, "pooled features"):
            raise InvalidArgumentError(f"{ref} embeds layer {imported['layer']!r}; --init-from takes models that embed "
                                       "pooled features")
        if not weights:
            raise InvalidArgumentError(f"--init-from {ref} needs its weights file ({imported.get('weights')}) as --weights")
        if sha256_file(weights) != imported.get("weights_sha256"):
            raise InvalidArgumentError(f"--weights {weights} is not the file {ref} was imported from "
                                       f"({imported.get('weights')}, sha256 {str(imported.get('weights_sha256'))[:12]}…)")
        arch = imported["arch"]
        return card, (arch if str(arch).startswith("timm:") else str(arch)), weights
    model_cfg = card.training.get("model")
    if model_cfg:
        if not weights or not (Path(weights) / "model.safetensors").is_file():
            raise InvalidArgumentError(f"--init-from {ref} (trained with qdrant-compat) needs its checkpoint folder as "
                                       "--weights (the --out of its train)")
        from safetensors.torch import load_file, save_file

        state = {k[len("backbone."):]: v for k, v in load_file(str(Path(weights) / "model.safetensors")).items()
                 if k.startswith("backbone.")}
        tmp = Path(scratch) / "backbone.safetensors"  # the old checkpoint's backbone alone, for create_backbone
        save_file(state, str(tmp))
        return card, str(model_cfg["backbone"]), str(tmp)
    raise InvalidArgumentError(f"{ref} was imported as a bare ONNX graph: there are no torch weights to start from; "
                               "import it with --arch and its weights file, or pick --backbone and --weights")


class _TrainProgress:
    """A bar with the step's own words on a TTY; elsewhere a line on stderr every ``every_s`` seconds."""

    def __init__(self, state: CliState, total: int, every_s: float = 10.0) -> None:
        import sys
        import time

        self.state, self.total, self.every_s = state, total, every_s
        self.tty = state.progress_enabled()
        self.pipe = state.show_progress and not state.json and not sys.stderr.isatty()
        self.text, self.last_line = "", time.monotonic()
        self.bar: Any = None

    def __enter__(self) -> _TrainProgress:
        import sys

        if self.tty:
            self.bar = click.progressbar(length=self.total, label="training", file=sys.stderr, show_eta=True,
                                         item_show_func=lambda _: self.text).__enter__()
            self._done = 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def step(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self._done, None)
            self._done = done

    def report(self, rep) -> None:  # type: ignore[no-untyped-def]
        import time

        if self.bar is not None:
            self.text = " ".join(f"{k} {v:.3f}" for k, v in rep.losses.items()) + f" | {rep.images_per_s:.0f} img/s"
            self.text = f"epoch {rep.epoch}/{rep.epochs} " + self.text
        elif self.pipe and time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            click.echo(rep.line(), err=True)

    def epoch(self, epoch: int, row: dict) -> None:  # type: ignore[type-arg]
        if self.pipe:
            terms = " ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("epoch", "seconds", "images_per_s"))
            click.echo(f"epoch {epoch} done: {terms} ({row['seconds']:.1f} s, {row['images_per_s']:.0f} img/s)", err=True)


@click.command()
@click.argument("data", required=False, type=click.Path(exists=True))
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Checkpoint folder to write.")
@click.option("--resume", "resume_dir", default=None, type=click.Path(file_okay=False),
              help="Continue the run that writes this checkpoint folder, from its last resume state (its options are "
                   "read from there; DATA and --out may be left out).")
@click.option("--split", default="train", show_default=True, help="Split of an .npz bundle.")
@click.option("--max-classes", type=click.IntRange(min=1), default=None, help="Use only the first N classes.")
@click.option("--backbone", default="smallcnn", show_default=True,
              help="smallcnn, efficientnet-lite0..4, any torchvision classification model, or timm:NAME.")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="Local backbone weights (safetensors or a torch state dict; nothing is downloaded).")
@click.option("--init-from", default=None,
              help="NAME@VERSION: start from this registered model's backbone and input spec (--weights: its weights "
                   "file, or its checkpoint folder).")
@click.option("--freeze-backbone", is_flag=True, help="Train only the embedding head and classifier.")
@click.option("--dim", type=click.IntRange(min=1), default=128, show_default=True, help="Embedding dimension.")
@click.option("--head", type=click.Choice(["mlp", "linear"]), default="mlp", show_default=True, help="Embedding head.")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Input size in pixels, square [default: 64, or "
              "the --init-from model's].")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Input channels [default: 3].")
@click.option("--mean", default=None, help="Comma-separated per-channel mean (default ImageNet / 0.5).")
@click.option("--std", default=None, help="Comma-separated per-channel std.")
@click.option("--augment", type=click.Choice(["none", "flip", "light", "standard"]), default="none", show_default=True,
              help="Training views: flip; light = random resized crop (60-100 %) + flip; standard = crop (25-100 %) + "
                   "flip + colour jitter. With --old-model the old model embeds the same view.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Passes over the data.")
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True,
              help="Images per optimisation step, over all processes and --accum-steps.")
@click.option("--accum-steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Micro-batches per step (gradient accumulation).")
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate of the head and classifier.")
@click.option("--backbone-lr", type=FiniteRange(min=0, min_open=True), default=None,
              help="Learning rate of the backbone [default: --lr].")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Linear warm-up steps before the cosine decay.")
@click.option("--weight-decay", type=FiniteRange(min=0), default=1e-4, show_default=True, help="AdamW weight decay.")
@click.option("--seed", default=0, show_default=True, help="Seed of the initialisation, order and views.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto", show_default=True,
              help="Mixed precision (auto: bf16 or fp16 on a GPU, off on a CPU).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training step.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="DataLoader worker processes reading and augmenting images.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps between resume states (0: each epoch's end only).")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True,
              help="Steps between progress reports (loss terms, images/s).")
@click.option("--deterministic", is_flag=True, help="Deterministic algorithms only (bit-reproducible resume on CPU).")
@click.option("--old-model", default=None, help="NAME@VERSION: train backward-compatible with this frozen model.")
@click.option("--loss", "losses", multiple=True,
              help="NAME[=WEIGHT], repeatable (default: norm_softmax; with --old-model the BCT default).")
@click.option("--no-labels", is_flag=True, help="Label-free compatible training (with --old-model): the data's labels "
                                                "are ignored and never read.")
@click.option("--gate/--no-gate", default=True, show_default=True,
              help="With --old-model: hold out a slice of each class, measure new/old vs old/old on it after every "
                   "epoch, keep the best epoch that meets the criterion, raise the compatibility weight while it fails.")
@click.option("--gate-holdout", type=FiniteRange(0, 0.5, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Fraction of each class the gate holds out (at least 2 images a class).")
@click.option("--gate-data", type=click.Path(exists=True), default=None,
              help="A labelled image set neither model trains on (e.g. a validation split) for the gate to measure on, "
                   "instead of holding out training images: fairer when the old model was trained on DATA.")
@click.option("--gate-split", default="test", show_default=True, help="Split of a --gate-data .npz bundle.")
@click.option("--gate-boost", type=FiniteRange(min=1), default=1.0, show_default=True,
              help="While the criterion fails in the second half of training, multiply the compatibility terms' weights "
                   "by this after each epoch (cap x4); 1 = off.")
@click.option("--gate-margin", type=FiniteRange(), default=0.0, show_default=True,
              help="The criterion: new/old top-1 must exceed old/old by more than this many points.")
@click.option("--register", "register_as", default=None, help="Also export and register as NAME@VERSION.")
@cache_options
@click.pass_context
def train(ctx: click.Context, **opts: Any) -> None:
    """Train an embedding model on DATA: an image folder root/<class>/<image>, an .npz bundle, or an image list
    (.csv/.tsv/.jsonl with image and class columns, or .txt with one path or URL a line).

    Streams the images (memory does not grow with their number), checkpoints for --resume, and runs under
    torchrun for several GPUs: torchrun --nproc-per-node 4 -m qdrant_compat.cli.main train ...
    """
    from qdrant_compat.errors import require_torch

    require_torch("'train'")
    state: CliState = ctx.find_object(CliState)  # type: ignore[assignment]
    if opts["resume_dir"]:
        opts = _resumed_options(ctx, opts)
    elif not opts["data"] or not opts["out_dir"]:
        raise click.UsageError("train needs DATA and --out (or --resume DIR to continue a run)")
    _train(state, opts)


def _resumed_options(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    """The options a run was started with, with those given now on the command line on top."""
    import json
    from pathlib import Path

    from qdrant_compat.errors import CorruptArtifactError

    d = Path(opts["resume_dir"])
    try:
        saved = json.loads((d / ARGS_FILE).read_text())
    except FileNotFoundError:
        raise InvalidArgumentError(f"{d} holds no {ARGS_FILE}: it is not the --out of a train run") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"{d / ARGS_FILE} cannot be read ({exc})") from None
    merged = dict(saved)
    for k, v in opts.items():
        src = ctx.get_parameter_source(k)
        if src is not None and src.name == "COMMANDLINE":
            merged[k] = v
    merged["losses"] = tuple(merged.get("losses") or ())
    merged["out_dir"], merged["resume_dir"] = str(d), str(d)
    return merged


def _train(state: CliState, o: dict[str, Any]) -> None:
    import json
    from pathlib import Path

    from qdrant_compat.cards import InputSpec, parse_ref
    from qdrant_compat.cli.context import make_cache
    from qdrant_compat.data.sources import open_source
    from qdrant_compat.models import ModelConfig
    from qdrant_compat.training import TrainConfig
    from qdrant_compat.training.config import resolve_device
    from qdrant_compat.training.distributed import Dist
    from qdrant_compat.training.gate import GateConfig
    from qdrant_compat.training.pipeline import default_losses, train_and_register

    dist = Dist.from_env(resolve_device(o["device"]))
    out_dir, backbone, weights = o["out_dir"], o["backbone"], o["weights"]
    base_spec = None
    if o["init_from"]:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="qc-init-")  # lives until _train returns, then removed
        init_card, backbone, weights = _init_from(state.registry, o["init_from"], weights, scratch.name)
        base_spec = init_card.input
    c = int(o["channels"] or (base_spec.channels if base_spec else 3))
    default_mean, default_std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if c == 3 else ((0.5,), (0.5,))
    if base_spec is not None and base_spec.channels == c:
        default_mean, default_std = base_spec.mean, base_spec.std
    spec = InputSpec(size=int(o["size"] or (base_spec.size if base_spec else 64)), channels=c,
                     mean=_floats(o["mean"], "--mean") if o["mean"] else default_mean,
                     std=_floats(o["std"], "--std") if o["std"] else default_std)
    if o["register_as"]:
        parse_ref(o["register_as"])
    if o["no_labels"] and not o["old_model"]:
        raise InvalidArgumentError("--no-labels trains a model compatible with an old one: name it with --old-model")
    src = open_source(o["data"], split=o["split"], max_classes=o["max_classes"])
    cache = make_cache(o["cache_dir"], o["cache_size"], o["no_cache"])
    if dist.is_main and not o["resume_dir"]:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / ARGS_FILE).write_text(json.dumps({k: v for k, v in o.items() if k != "resume_dir"}, indent=2,
                                                          default=list))
    default = default_losses(old=bool(o["old_model"]), no_labels=o["no_labels"])
    cfg = TrainConfig(epochs=o["epochs"], batch_size=o["batch_size"], lr=o["lr"], backbone_lr=o["backbone_lr"],
                      weight_decay=o["weight_decay"], seed=o["seed"], device=o["device"], no_labels=o["no_labels"],
                      losses=_loss_weights(tuple(o["losses"]), default), augment=o["augment"], workers=o["workers"],
                      amp=o["amp"], compile=o["compile_"], accum_steps=o["accum_steps"], warmup_steps=o["warmup_steps"],
                      checkpoint_every=o["checkpoint_every"], log_every=o["log_every"], deterministic=o["deterministic"])
    mcfg = ModelConfig(backbone=backbone, dim=o["dim"], head=o["head"], in_channels=c, freeze_backbone=o["freeze_backbone"])
    gate = GateConfig(holdout=o.get("gate_holdout", 0.1), margin=o.get("gate_margin", 0.0), seed=o["seed"],
                      boost=o.get("gate_boost", 1.0)) if o.get("gate", True) else None
    steps = max(1, len(src) // o["batch_size"]) * o["epochs"]
    with _TrainProgress(state, steps) as bar:
        done = train_and_register(
            src, out_dir, split=o["split"], registry=state.registry, model=mcfg, config=cfg, spec=spec,
            old_model=o["old_model"], register_as=o["register_as"], gate=gate, gate_data=o.get("gate_data"),
            gate_split=o.get("gate_split", "test"), max_classes=o["max_classes"], weights=weights,
            init_from=o["init_from"], cache=cache, dist=dist, resume=bool(o["resume_dir"]), progress=bar.step,
            on_log=bar.report, on_epoch=bar.epoch, dataset=str(o["data"]), announce=False)
    if not dist.is_main:
        dist.close()
        return
    res = done.result
    out: dict[str, Any] = {"checkpoint": out_dir, "images": len(src), "classes": len(src.classes), "epochs": o["epochs"],
                           "seconds": round(res.seconds, 2), "images_per_s": round(res.images_per_s, 1),
                           "final": res.history[-1], "history": res.history, "input": res.input_mode,
                           "skipped": {str(k): v for k, v in sorted(res.skipped.items())[:20]},
                           "skipped_count": len(res.skipped), "processes": dist.world,
                           "resumed_from_step": res.resumed_from_step}
    if res.gate is not None:
        out["gate"] = {**res.gate.to_dict(), "verdict": res.gate.sentence()}
    if done.card is not None:
        out.update(registered=done.card.ref, fingerprint=done.card.fingerprint,
                   export_max_abs_diff=done.export_max_abs_diff)
    if done.converters:
        out["converters"] = [c.id for c in done.converters]
    dist.close()
    state.emit(out, lambda: "\n".join(
        [f"trained {len(src)} images / {len(src.classes)} classes in {res.seconds:.1f}s ({res.images_per_s:.0f} img/s, "
         f"train acc {res.history[-1]['train_acc']:.3f}) -> {out_dir}"]
        + ([f"skipped {len(res.skipped)} unreadable image(s), e.g. {next(iter(res.skipped.values()))}"] if res.skipped else [])
        + ([res.gate.sentence()] if res.gate is not None else [])
        + ([f"registered {out['registered']} ({str(out['fingerprint'])[:12]}…)"] if o["register_as"] else [])
        + [f"registered the jointly trained head as converter {c.id}: queries by {c.source} reach {c.target}'s "
           f"vectors through it (measure it with evaluate --adapter {c.id})" for c in done.converters]))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="Model name (the part before @ in NAME@VERSION).")
@click.option("--version", required=True, help="Model version (the part after @).")
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


