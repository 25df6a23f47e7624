"""Open what a user names as training or evaluation data: an image folder, an npz bundle or an image list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.data.images import ImageFolder, _Subset, load_npz
from qdrant_compat.data.lists import LIST_SUFFIXES, ImageList
from qdrant_compat.errors import InvalidArgumentError


def open_source(data: str | Path, *, split: str = "train", max_classes: int | None = None) -> Any:
    """An image folder, an npz bundle or an image list (``.csv``/``.tsv``/``.jsonl``/``.txt``/``.lst``, see
    :mod:`qdrant_compat.data.lists`), optionally limited to its first ``max_classes`` classes."""
    p = Path(data)
    src: Any
    if p.suffix == ".npz":
        src = load_npz(p, split)
    elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
        src = ImageList(p)
    elif p.is_file():
        raise InvalidArgumentError(f"{p} is a file but neither an .npz bundle nor an image list "
                                   f"({', '.join(LIST_SUFFIXES)}); an image folder is a directory root/<class>/<image>")
    else:
        src = ImageFolder(p)
    if max_classes is not None:
        if max_classes < 1:
            raise InvalidArgumentError(f"max_classes must be >= 1, got {max_classes}")
        idx = np.flatnonzero(src.labels < max_classes)
        src = src.subset(idx) if hasattr(src, "subset") else _Subset(src, idx)
        src.classes = list(src.classes[:max_classes])
    return src
