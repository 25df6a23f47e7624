"""A labelled list of image references (CSV, JSON lines or plain text), read with the backfill's readers.

Users who train on millions of images rarely have them in one ``root/<class>/<image>`` tree: they have a
manifest. Each row names one image (a local path, ``file://``, ``http(s)://`` or any fsspec URL) and its
class:

* ``.csv`` / ``.tsv``: a header row with an image column (``image``, ``path``, ``url``, ``file`` or ``ref``)
  and a class column (``label``, ``class``, ``category`` or ``y``);
* ``.jsonl``: one object a line with the same keys;
* anything else: one reference a line, optionally followed by whitespace and the class; without a class, the
  reference's parent folder names it (``.../<class>/<image>``).

Relative local paths are taken relative to the list's own folder. Class names are sorted, as in
:class:`~qdrant_compat.data.ImageFolder`, so the same images give the same label space either way. Images are
read on access (:meth:`ImageList.get`), so a list of a million URLs costs its strings, not its pixels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat.data.images import ImageRefs, is_remote
from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

LIST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt", ".lst")
IMAGE_KEYS = ("image", "path", "url", "file", "ref")
LABEL_KEYS = ("label", "class", "category", "y")


def _pick(keys: list[str], wanted: tuple[str, ...], what: str, where: Path) -> str:
    for k in keys:
        if k.strip().lower() in wanted:
            return k
    raise InvalidArgumentError(f"{where}: no {what} column; expected one of {list(wanted)}, found {keys}")


class ImageList:
    """Images named by a list file; ``labels``/``classes`` as every :class:`~qdrant_compat.data.ImageSource`.

    Args:
        path: the list file.
        reader: how references are read (default :class:`~qdrant_compat.data.ImageRefs`: timeouts, retries,
            404 = missing).

    Raises:
        InvalidArgumentError: the file is missing, empty, or lacks an image/class column.
    """

    def __init__(self, path: str | Path, *, reader: Any | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidArgumentError(f"image list {self.path} does not exist")
        self.reader = reader or ImageRefs()
        rows = self._rows()
        if not rows:
            raise InvalidArgumentError(f"image list {self.path} names no images")
        self.classes = sorted({c for _, c in rows})
        index = {c: i for i, c in enumerate(self.classes)}
        base = self.path.parent
        self.refs = [r if is_remote(r) or r.startswith("file://") or Path(r).is_absolute() else str(base / r)
                     for r, _ in rows]
        self.labels = np.asarray([index[c] for _, c in rows], dtype=np.int64)

    def _rows(self) -> list[tuple[str, str]]:
        suffix = self.path.suffix.lower()
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptArtifactError(f"image list {self.path} cannot be read as UTF-8 text ({exc})") from None
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
            fields = list(reader.fieldnames or [])
            img, lab = _pick(fields, IMAGE_KEYS, "image", self.path), _pick(fields, LABEL_KEYS, "class", self.path)
            return [(str(r[img]).strip(), str(r[lab]).strip()) for r in reader if r.get(img)]
        if suffix == ".jsonl":
            out = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorruptArtifactError(f"{self.path} line {n} is not JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise InvalidArgumentError(f"{self.path} line {n}: expected an object, got {type(obj).__name__}")
                keys = list(obj)
                img, lab = _pick(keys, IMAGE_KEYS, "image", self.path), _pick(keys, LABEL_KEYS, "class", self.path)
                out.append((str(obj[img]), str(obj[lab])))
            return out
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            ref = parts[0]
            label = parts[1].strip() if len(parts) > 1 else Path(ref.split("://", 1)[-1]).parent.name
            if not label:
                raise InvalidArgumentError(f"{self.path}: {ref!r} has no class and no parent folder to take it from")
            out.append((ref, label))
        return out

    def __len__(self) -> int:
        return len(self.refs)

    def get(self, i: int) -> Any:
        return self.reader.read(self.refs[i])

    def raw_key(self, i: int) -> bytes:
        """What identifies image ``i`` for the embedding cache: a local file's bytes, a remote image's URL."""
        ref = self.refs[i]
        if is_remote(ref):
            return ref.encode()
        p = Path(ref[7:] if ref.startswith("file://") else ref)
        try:
            return p.read_bytes()
        except OSError:
            return ref.encode()

    def subset(self, idx: np.ndarray) -> Any:
        from qdrant_compat.data.images import _Subset

        return _Subset(self, idx)
