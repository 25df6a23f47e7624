"""torch -> ONNX, verified: ``onnx.checker``, named input/output, a dynamic batch axis, the model's
identity in ``metadata_props``, and an ONNX Runtime vs torch parity check on fresh random inputs."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qdrant_compat.cards import InputSpec
from qdrant_compat.errors import CorruptArtifactError, QdrantCompatError
from qdrant_compat.runtime.onnx import INPUT_NAME, OUTPUT_NAME, ort_session

log = logging.getLogger(__name__)
PARITY_ATOL = 1e-4


class ExportError(QdrantCompatError):
    """The exported graph does not reproduce the torch model."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float
    batch_sizes: tuple[int, ...]


def export_module(
    module: nn.Module,
    sample_shape: tuple[int, ...],
    path: str | Path,
    *,
    metadata: dict[str, str] | None = None,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
    opset: int = 17,
    atol: float = PARITY_ATOL,
    seed: int = 0,
) -> ExportReport:
    """Export ``module`` (input ``(batch, *sample_shape[1:])``) and verify it.

    Raises:
        ExportError: ONNX Runtime output differs from torch by more than ``atol``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    dummy = torch.zeros(sample_shape, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))

    sess = ort_session(path, ["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    sizes = (1, 3, 7)
    for b in sizes:
        x = torch.randn((b, *sample_shape[1:]), generator=gen)
        with torch.no_grad():
            ref = module(x).numpy()
        got = sess.run([output_name], {input_name: x.numpy()})[0]
        worst = max(worst, float(np.max(np.abs(ref - got))))
    if not worst <= atol:
        raise ExportError(f"ONNX export of {path.name} differs from torch by {worst:.2e} (> {atol:.0e})")
    log.info("exported %s: parity max |diff| = %.2e", path, worst)
    return ExportReport(path=path, max_abs_diff=worst, batch_sizes=sizes)


def export_embedding_model(
    model: nn.Module, spec: InputSpec, path: str | Path, *, name: str, version: str, atol: float = PARITY_ATOL
) -> ExportReport:
    """One ONNX file from preprocessed image tensor ``(n, C, S, S)`` to embedding ``(n, dim)``."""
    meta = {
        "qdrant_compat.name": name,
        "qdrant_compat.version": version,
        "qdrant_compat.input_size": str(spec.size),
        "qdrant_compat.channels": str(spec.channels),
    }
    return export_module(model, (1, spec.channels, spec.size, spec.size), path, metadata=meta, atol=atol)


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CorruptArtifactError(f"{path} is not a readable ONNX file ({exc})") from None
    return {p.key: p.value for p in proto.metadata_props}
