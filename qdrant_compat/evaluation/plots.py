"""Pictures of compatibility: the query x gallery heat map, seen/new bars, backfill curves (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _plt():  # type: ignore[no-untyped-def]
    from qdrant_compat.errors import require_extra

    require_extra("report", "matplotlib", feature="pictures (--heatmap, --report)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matrix_of(cells: dict[str, dict[str, float]], metric: str = "top1") -> tuple[list[str], list[str], list[list[float | None]]]:
    queries: list[str] = []
    galleries: list[str] = []
    for key in cells:
        q, g = key.rsplit("/", 1) if key.count("/") == 1 else key.split("/", 1)
        if q not in queries:
            queries.append(q)
        if g not in galleries:
            galleries.append(g)
    grid = [[cells.get(f"{q}/{g}", {}).get(metric) for g in galleries] for q in queries]
    return queries, galleries, grid


def color_scale(values: Sequence[float]) -> tuple[float, float]:
    """The heat map's (vmin, vmax): fitted to the finite values with a small margin, so 54 and 57 do not look alike."""
    finite = [float(v) for v in values if v is not None and v == v and abs(v) != float("inf")]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = max(0.5, 0.05 * (hi - lo))
    return lo - pad, hi + pad


def heatmap(cells: dict[str, dict[str, float]], path: str | Path, *, metric: str = "top1", title: str = "") -> Path:
    """Write a PNG heat map of ``metric`` for every query (rows) x gallery (columns) cell."""
    plt = _plt()
    import numpy as np

    queries, galleries, grid = matrix_of(cells, metric)
    arr = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(galleries), 1.2 + 0.8 * len(queries)))
    vmin, vmax = color_scale(arr.ravel().tolist())
    im = ax.imshow(arr, cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(galleries)), galleries, rotation=30, ha="right")
    ax.set_yticks(range(len(queries)), queries)
    ax.set_xlabel("gallery model")
    ax.set_ylabel("query model")
    for i in range(len(queries)):
        for j in range(len(galleries)):
            if np.isfinite(arr[i, j]):
                r, g, b, _ = im.cmap(im.norm(arr[i, j]))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5  # the label's colour by the cell's luminance
                ax.text(j, i, f"{arr[i, j]:.1f}", ha="center", va="center", fontsize=11, fontweight="bold",
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label=f"{metric} (%)")
    ax.set_title(title or f"cross-model retrieval, {metric}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def seen_new_bars(cells: dict[str, dict[str, float]], path: str | Path) -> Path | None:
    plt = _plt()
    keys = [k for k, v in cells.items() if "top1_seen" in v]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(keys)), 3.6))
    x = range(len(keys))
    ax.bar([i - 0.2 for i in x], [cells[k]["top1_seen"] for k in keys], width=0.4, label="seen classes")
    ax.bar([i + 0.2 for i in x], [cells[k]["top1_new"] for k in keys], width=0.4, label="new classes")
    ax.set_xticks(list(x), keys, rotation=30, ha="right")
    ax.set_ylabel("top-1 (%)")
    top = max([cells[k]["top1_seen"] for k in keys] + [cells[k]["top1_new"] for k in keys] + [1.0])
    ax.set_ylim(0, top * 1.3)  # headroom, so the legend sits clear of the bars
    ax.legend(loc="upper center", ncol=2, frameon=False)
    ax.set_title("top-1 on seen vs new classes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, baseline: float | None = None,
           title: str = "backfill curve") -> Path:
    """Line plot of ``{label: (fractions, top1)}``, with an optional horizontal baseline (old/old)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, (xs, ys) in series.items():
        ax.plot([100 * x for x in xs], ys, marker="o", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="old/old")
    ax.set_xlabel("gallery re-extracted with the new model (%)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
