"""Transformation heads between two embedding spaces, behind one interface.

A converter maps vectors of a *source* model to the space of a *target* model:

* ``old_to_new`` rewrites stored (old) vectors so new queries can search them (the FCT direction:
  Ramanujan et al., "Forward Compatible Training for Large-Scale Embedding Retrieval Systems", CVPR 2022);
* ``new_to_old`` maps new queries into the old space so the old gallery serves them (the adapter
  direction, e.g. "Drift-Adapter", 2025).

Every head is a small torch module (so fitting, ONNX export and inference share one definition) with
L2-normalised input and output: cosine geometry on both sides.

Example:
    >>> import numpy as np
    >>> from converters import create_converter
    >>> rng = np.random.default_rng(0); x = rng.normal(size=(500, 8)); y = x @ rng.normal(size=(8, 6))
    >>> conv = create_converter("linear", dim_in=8, dim_out=6)
    >>> report = conv.fit(x, y, seed=0)
    >>> round(report.val_cosine, 2) >= 0.99
    True
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError, require_extra

require_extra("train", "torch", feature="fitting or loading a converter head")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from converters.kinds import REGISTRY, list_converters  # noqa: E402

FORMAT_VERSION = 1


def register_converter(name: str) -> Callable[[type[Converter]], type[Converter]]:
    def deco(cls: type[Converter]) -> type[Converter]:
        cls.kind = name
        return REGISTRY.register(name)(cls)

    return deco


def create_converter(kind: str, *, dim_in: int, dim_out: int, **options: Any) -> Converter:
    """Build an unfitted head by kind.

    Raises:
        InvalidArgumentError: unknown kind (lists valid ones) or unknown option.
    """
    return REGISTRY.create(kind, dim_in=dim_in, dim_out=dim_out, **options)  # type: ignore[no-any-return]


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class FitReport:
    kind: str
    n_train: int
    n_val: int
    val_cosine: float
    train_cosine: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


class NormalizedAffine(nn.Module):
    """``normalize(normalize(x) @ W + b)`` (W may be a product of factors)."""

    def __init__(self, dim_in: int, dim_out: int, rank: int | None = None) -> None:
        super().__init__()
        if rank is None:
            self.weight = nn.Parameter(torch.zeros(dim_in, dim_out))
        else:
            self.a = nn.Parameter(torch.zeros(dim_in, rank))
            self.b_ = nn.Parameter(torch.zeros(rank, dim_out))
        self.bias = nn.Parameter(torch.zeros(dim_out))
        self.rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(x, dim=1)
        y = x @ self.weight if self.rank is None else (x @ self.a) @ self.b_
        return nn.functional.normalize(y + self.bias, dim=1)


class Converter(abc.ABC):
    """Base class: subclasses build ``self.module`` and implement :meth:`_fit`."""

    kind: ClassVar[str] = ""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        if dim_in <= 0 or dim_out <= 0:
            raise InvalidArgumentError(f"converter dimensions must be positive, got {dim_in} -> {dim_out}")
        self.dim_in, self.dim_out = int(dim_in), int(dim_out)
        self.module: nn.Module = self.build()
        self.fitted = False

    # --- subclass API -----------------------------------------------------
    @abc.abstractmethod
    def build(self) -> nn.Module:
        """The torch module that maps ``(n, dim_in)`` to ``(n, dim_out)``."""

    def options(self) -> dict[str, Any]:
        return {}

    @abc.abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> dict[str, Any]:
        """Fit on normalised training pairs (validation pairs for early stopping); returns extra figures."""

    # --- public API -------------------------------------------------------
    def _check(self, x: Any, dim: int, what: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise InvalidArgumentError(f"{what}: expected shape (n, {dim}), got {tuple(arr.shape)}")
        if not np.isfinite(arr).all():
            raise InvalidArgumentError(f"{what}: contains NaN or infinity")
        return arr

    def fit(self, src: Any, dst: Any, *, seed: int = 0, val_fraction: float = 0.1, labels: np.ndarray | None = None,
            target_classifier: np.ndarray | None = None) -> FitReport:
        """Fit on paired embeddings (row i of ``src`` and ``dst`` embed the same image).

        A held-out ``val_fraction`` of the pairs (chosen with ``seed``) drives early stopping where the
        head is iterative and reports the fit's cosine agreement. ``labels`` and ``target_classifier`` (the
        target model's frozen classifier rows) let heads that support it add a classification term.
        """
        x = l2n(self._check(src, self.dim_in, "source embeddings"))
        y = l2n(self._check(dst, self.dim_out, "target embeddings"))
        if len(x) != len(y):
            raise InvalidArgumentError(f"{len(x)} source but {len(y)} target embeddings: they must be paired")
        if len(x) < 10:
            raise InvalidArgumentError(f"need at least 10 pairs to fit a converter, got {len(x)}")
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(x))
        n_val = max(1, int(round(val_fraction * len(x))))
        val, tr = perm[:n_val], perm[n_val:]
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        if labels is not None and len(labels) != len(x):
            raise InvalidArgumentError(f"{len(labels)} labels for {len(x)} pairs")
        if getattr(self, "class_weight", 0.0) > 0 and (labels is None or target_classifier is None):
            raise InvalidArgumentError(
                f"{self.kind} option class_weight > 0 needs the pairs' labels and the target model's classifier "
                "(fit from a labelled image set, with a target model registered with its classifier)"
            )
        if labels is not None and target_classifier is not None:
            lab = np.asarray(labels)
            if lab.size and (lab.max() >= len(target_classifier) or lab.min() < -1):
                raise InvalidArgumentError(
                    f"labels must index the target classifier's {len(target_classifier)} rows (or be -1 for a class "
                    f"it does not know); got range [{lab.min()}, {lab.max()}]"
                )
        self._labels = None if labels is None else np.asarray(labels)[tr]
        self._val_labels = None if labels is None else np.asarray(labels)[val]
        self._classifier = target_classifier
        extra = self._fit(x[tr], y[tr], x[val], y[val], seed)
        self.fitted = True
        secs = time.perf_counter() - t0
        return FitReport(kind=self.kind, n_train=len(tr), n_val=len(val), val_cosine=self._cos(x[val], y[val]),
                         train_cosine=self._cos(x[tr[:5000]], y[tr[:5000]]), seconds=secs, extra=extra)

    def _cos(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.sum(self.transform(x) * l2n(y), axis=1)))

    @torch.no_grad()
    def transform(self, x: Any, batch_size: int = 8192) -> np.ndarray:
        """Map source vectors to the target space ``(n, dim_out)`` float32, unit norm."""
        arr = self._check(x, self.dim_in, f"{self.kind} converter input")
        self.module.eval()
        out = [self.module(torch.from_numpy(arr[s : s + batch_size].astype(np.float32))).numpy()
               for s in range(0, len(arr), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim_out), np.float32)

    # --- artifacts --------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": self.kind, "dim_in": self.dim_in,
                "dim_out": self.dim_out, "options": self.options()}

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self.config(), indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.module.state_dict().items()}, str(d / "weights.safetensors"))
        return d

    def to_onnx(self, path: str | Path, metadata: dict[str, str] | None = None) -> float:
        """Export with parity check; returns the max abs difference vs torch."""
        from qdrant_compat.export import export_module

        rep = export_module(self.module, (1, self.dim_in), path, metadata=metadata, input_name="vector",
                            output_name="converted")
        return rep.max_abs_diff


def load_converter(directory: str | Path) -> Converter:
    """Rebuild a saved head (config + safetensors weights, loaded strictly).

    Raises:
        CorruptArtifactError: missing or unreadable files, or weights that do not fit.
    """
    from safetensors.torch import load_file

    from qdrant_compat._config import read_json

    d = Path(directory)
    cfg = read_json(d / "config.json", f"{d} is not a saved converter: config.json is missing")
    if cfg.get("format_version") != FORMAT_VERSION or cfg.get("kind") not in REGISTRY:
        raise CorruptArtifactError(f"{d / 'config.json'}: unknown converter format {cfg.get('format_version')!r} "
                                   f"or kind {cfg.get('kind')!r} (known: {list_converters()})")
    conv = create_converter(cfg["kind"], dim_in=cfg["dim_in"], dim_out=cfg["dim_out"], **cfg.get("options", {}))
    try:
        conv.module.load_state_dict(load_file(str(d / "weights.safetensors")), strict=True)
    except Exception as exc:
        raise CorruptArtifactError(f"{d / 'weights.safetensors'} cannot be loaded ({exc})") from None
    conv.fitted = True
    return conv


def asdict_report(r: FitReport) -> dict[str, Any]:
    return asdict(r)
