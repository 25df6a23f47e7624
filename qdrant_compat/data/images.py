"""Labelled image sources: an image folder ``root/<class>/<image>``, arrays, or JPEG bytes in an npz."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from qdrant_compat.errors import CorruptArtifactError, InvalidArgumentError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageUnreachableError(CorruptArtifactError):
    """An image whose server did not answer after every retry (timeouts, 5xx, refused connections): a fault of
    the moment, tried again by the next run, unlike a missing or undecodable image."""


class ImageMissingError(InvalidArgumentError):
    """A referenced image does not exist."""


def load_image(path: str | Path) -> Image.Image:
    """Open an image file fully (so errors surface here, not later).

    Raises:
        ImageMissingError: the file does not exist.
        CorruptArtifactError: the file is not a readable image, or is a decompression bomb.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageMissingError(f"image file {p} does not exist")
    return decode_image(p, f"image file {p}")


def is_remote(ref: Any) -> bool:
    """Whether ``ref`` names an image behind a URL scheme other than ``file://`` (read over the network)."""
    if not isinstance(ref, str):
        return False
    head, sep, _ = ref.partition("://")
    return bool(sep) and head.isalnum() and head.lower() != "file"


def redact(ref: Any) -> str:
    """A reference fit for a message: a URL's ``user:password@`` replaced by ``***@``, at most 300 characters."""
    text = str(ref)
    head, sep, rest = text.partition("://")
    if sep:
        netloc, slash, path = rest.partition("/")
        if "@" in netloc:
            text = f"{head}://***@{netloc.rsplit('@', 1)[1]}{slash}{path}"
    return text if len(text) <= 300 else text[:297] + "..."


def _reason(exc: BaseException) -> str:
    """An exception's text for a message, unless it quotes the file's bytes (Pillow's parsers do): never echo
    file content into errors, which are kept in the collection's metadata."""
    msg = str(exc)
    if "b'" in msg or 'b"' in msg or any(ord(c) < 32 and c not in "\t\n" for c in msg):
        return type(exc).__name__
    return f"{type(exc).__name__}: {msg[:200]}"


def decode_image(src: str | Path | IO[bytes], what: str) -> Image.Image:
    """Decode fully (errors surface here, not later); every unreadable case, decompression bombs included, is
    a :class:`CorruptArtifactError` naming ``what``."""
    try:
        with Image.open(src) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptArtifactError(f"{what} cannot be read as an image ({_reason(exc)})") from None


class ImageReader(Protocol):
    """The seam for images that points reference by a payload value (a path today; URLs later).

    ``read`` returns the decoded image, or raises :class:`ImageMissingError` (nothing there) or
    :class:`CorruptArtifactError` (something there, not a usable image).
    """

    def exists(self, ref: Any) -> bool: ...

    def read(self, ref: Any) -> Image.Image: ...


class ImageRefs:
    """Images referenced by a local path, ``file://``, ``http(s)://`` or (with fsspec installed) any other URL
    scheme fsspec knows (``s3://``, ``gs://``, ...).

    HTTP reads use the standard library: a timeout per socket read and a ``deadline`` per image, ``retries`` more attempts with exponential
    back-off for timeouts, connection errors and 5xx answers; a 404/410 is *missing* at once (never retried),
    another 4xx is *failed*. Bodies above ``max_bytes`` are refused before decoding. ``concurrency`` images of
    a batch are fetched at once (a bounded thread pool in the backfill's read stage).
    """

    def __init__(self, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5, max_bytes: int = 50 << 20,
                 concurrency: int = 8, deadline: float | None = None) -> None:
        self.timeout, self.retries, self.backoff, self.max_bytes = timeout, retries, backoff, max_bytes
        self.concurrency = concurrency
        # one image's whole read, every attempt included (a server that drips bytes never trips ``timeout``)
        self.deadline = deadline if deadline is not None else 2 * max(timeout, 1.0) * (retries + 1)
        self._local = LocalImages()

    @staticmethod
    def _scheme(ref: Any) -> str:
        if not isinstance(ref, str) or not ref:
            raise ImageMissingError(f"image reference {ref!r} is not a path or URL")
        head, sep, _ = ref.partition("://")
        return head.lower() if sep and head.isalnum() else ""

    def exists(self, ref: Any) -> bool:
        try:
            scheme = self._scheme(ref)
        except ImageMissingError:
            return False
        if scheme in ("", "file"):
            return self._local.exists(ref[7:] if scheme == "file" else ref)
        return True  # remote: known only by reading it (see probe)

    def probe(self, ref: Any, timeout: float = 3.0) -> bool:
        """Whether ``ref`` can be read now, asked of its server: an HTTP HEAD (one attempt, ``timeout``), or the
        fsspec file system's ``exists``; local paths as :meth:`exists`. A 404, a refused connection or a timeout
        is False. What ``upgrade plan`` counts as missing before a run."""
        import urllib.error
        import urllib.request

        try:
            scheme = self._scheme(ref)
        except ImageMissingError:
            return False
        if scheme in ("", "file"):
            return self.exists(ref)
        if scheme not in ("http", "https"):
            try:
                from fsspec.core import url_to_fs

                fs, path = url_to_fs(ref)
                return bool(fs.exists(path))
            except ImportError:
                return True  # unknown without the driver: the run will say
            except Exception:
                return False
        for method in ("HEAD", "GET"):  # some servers refuse HEAD (405/501): one ranged GET then
            req = urllib.request.Request(ref, method=method, headers={"Range": "bytes=0-0"} if method == "GET" else {})
            try:
                with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310 - user's own image URLs
                    return True
            except urllib.error.HTTPError as exc:
                if method == "HEAD" and exc.code in (405, 501):
                    continue
                return exc.code < 400
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, ValueError):
                return False
        return False

    def read(self, ref: Any) -> Image.Image:
        scheme = self._scheme(ref)
        if scheme in ("", "file"):
            return self._local.read(ref[7:] if scheme == "file" else ref)
        data = self._fetch_http(ref) if scheme in ("http", "https") else self._fetch_fsspec(ref, scheme)
        return decode_image(io.BytesIO(data), f"image {redact(ref)}")

    def _fetch_http(self, url: str) -> bytes:
        import http.client
        import time
        import urllib.error
        import urllib.request

        shown = redact(url)
        deadline = time.monotonic() + self.deadline
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            if time.monotonic() >= deadline:
                break
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310 - user's own image URLs
                    chunks, size = [], 0
                    while True:  # a body that drips a byte at a time never trips the per-read timeout: a deadline
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"no complete answer within {self.deadline:g} s")
                        chunk = resp.read1(1 << 16)  # what one socket read gives: never waits for 64 KiB
                        if not chunk:
                            break
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise CorruptArtifactError(f"image {shown} is larger than {self.max_bytes} bytes: not read")
                return b"".join(chunks)
            except urllib.error.HTTPError as exc:
                if exc.code in (404, 410):
                    raise ImageMissingError(f"image {shown} not found (HTTP {exc.code})") from None
                if exc.code < 500:
                    raise CorruptArtifactError(f"image {shown}: HTTP {exc.code} {exc.reason}") from None
                last = f"HTTP {exc.code} {exc.reason}"
            except (http.client.InvalidURL, UnicodeError, ValueError) as exc:  # a space, non-ASCII, a bad IPv6 host
                raise CorruptArtifactError(f"image reference {shown} is not a valid URL ({type(exc).__name__})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise ImageUnreachableError(f"image {shown} could not be read after {attempt + 1} attempt(s) ({last})")

    def _fetch_fsspec(self, url: str, scheme: str) -> bytes:
        try:
            import fsspec
        except ImportError:
            raise CorruptArtifactError(f"image {redact(url)}: reading {scheme}:// needs fsspec and its {scheme} driver "
                                       f"(pip install fsspec s3fs / gcsfs)") from None
        try:
            with fsspec.open(url, "rb") as f:
                data: bytes = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise ImageMissingError(f"image {redact(url)} not found") from None
        except Exception as exc:  # the driver's own error types
            raise CorruptArtifactError(f"image {redact(url)} could not be read ({_reason(exc)})") from None
        if len(data) > self.max_bytes:
            raise CorruptArtifactError(f"image {redact(url)} is larger than {self.max_bytes} bytes: not read")
        return data


class LocalImages:
    """Images referenced by local file paths."""

    def exists(self, ref: Any) -> bool:
        return isinstance(ref, str) and bool(ref) and Path(ref).is_file()

    def read(self, ref: Any) -> Image.Image:
        if not isinstance(ref, str) or not ref:
            raise ImageMissingError(f"image reference {ref!r} is not a path")
        return load_image(ref)


class ImageSource(Protocol):
    """What training and indexing read: ``len``, ``labels``, ``classes`` and ``get(i)``."""

    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int: ...

    def get(self, i: int) -> Any: ...


def iter_batches(src: ImageSource, indices: Sequence[int], batch_size: int) -> Iterator[list[Any]]:
    for s in range(0, len(indices), batch_size):
        yield [src.get(int(i)) for i in indices[s : s + batch_size]]


class ImageFolder:
    """``root/<class>/<image>``; classes sorted by folder name, files sorted within a class."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InvalidArgumentError(f"image folder {self.root} does not exist or is not a folder")
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths: list[Path] = []
        labels: list[int] = []
        for ci, cname in enumerate(self.classes):
            for f in sorted((self.root / cname).iterdir()):
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    paths.append(f)
                    labels.append(ci)
        if not paths:
            raise InvalidArgumentError(
                f"image folder {self.root} holds no images; expected root/<class>/<image> "
                f"with extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> Image.Image:
        return load_image(self.paths[i])

    def raw_key(self, i: int) -> bytes:
        """The file's bytes: what identifies the image for the embedding cache."""
        try:
            return self.paths[i].read_bytes()
        except OSError:
            return str(self.paths[i]).encode()


class ArrayImages:
    """uint8 images ``(n, H, W)`` or ``(n, H, W, C)`` with integer labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray, classes: Sequence[str] | None = None) -> None:
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise InvalidArgumentError(f"images must be uint8 (n, H, W[, C]), got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise InvalidArgumentError(f"{len(x)} images but {len(y)} labels")
        self.x = x
        self.labels = np.asarray(y, dtype=np.int64)
        n_cls = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_cls)]

    def __len__(self) -> int:
        return len(self.x)

    def get(self, i: int) -> np.ndarray:
        return self.x[i]

    def raw_key(self, i: int) -> bytes:
        return self.x[i].tobytes() + repr(self.x[i].shape).encode()

    def subset(self, idx: np.ndarray) -> ArrayImages:
        return ArrayImages(self.x[idx], self.labels[idx], self.classes)


class JpegBytesImages:
    """Concatenated JPEG bytes with offsets (the Tiny-ImageNet npz layout); decoded on access."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> None:
        self.data, self.offsets = data, offsets
        self.labels = np.asarray(y, dtype=np.int64)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, i: int) -> Image.Image:
        raw = self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()
        try:
            return Image.open(io.BytesIO(raw)).convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise CorruptArtifactError(f"image {i} of the npz is not a readable JPEG ({exc})") from None

    def raw_key(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def subset(self, idx: np.ndarray) -> _Subset:
        return _Subset(self, idx)


class _Subset:
    def __init__(self, base: Any, idx: np.ndarray) -> None:
        self.base, self.idx = base, np.asarray(idx)
        self.labels = base.labels[self.idx]
        self.classes = base.classes

    def __len__(self) -> int:
        return len(self.idx)

    def get(self, i: int) -> Any:
        return self.base.get(int(self.idx[i]))

    def raw_key(self, i: int) -> bytes:
        return raw_key(self.base, int(self.idx[i]))


def raw_key(source: Any, i: int) -> bytes:
    """What identifies image ``i`` of ``source`` by content (the embedding cache's key): the source's own
    ``raw_key`` (file bytes, array bytes, JPEG bytes, a remote image's URL), else the decoded pixels."""
    if hasattr(source, "raw_key"):
        return bytes(source.raw_key(i))
    img = source.get(i)
    arr = np.asarray(img)
    return arr.tobytes() + repr(arr.shape).encode()


def unique_names(names: Sequence[str]) -> list[str]:
    """Class names made unique (``name``, ``name#2``, ...): labels are matched by name across models."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def load_npz(path: str | Path, split: str = "train") -> ArrayImages | JpegBytesImages:
    """Read split ``train`` or ``test`` of an npz bundle.

    Two layouts are understood: ``x_<split>``/``y_<split>`` uint8 arrays (Omniglot fixture) and
    ``<split>_jpeg``/``<split>_offsets``/``y_<split>`` (Tiny-ImageNet bundle).
    """
    p = Path(path)
    if split not in ("train", "test"):
        raise InvalidArgumentError(f"split must be 'train' or 'test', got {split!r}")
    try:
        z = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise InvalidArgumentError(f"npz file {p} does not exist") from None
    except (ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{p} is not a readable npz file ({exc})") from None
    keys = set(z.files)
    names = unique_names([str(c) for c in z["class_names"]]) if "class_names" in keys else None
    if f"x_{split}" in keys:
        return ArrayImages(z[f"x_{split}"], z[f"y_{split}"], names)
    if f"{split}_jpeg" in keys:
        return JpegBytesImages(z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"y_{split}"], names or [])
    raise InvalidArgumentError(
        f"{p} has neither x_{split}/y_{split} nor {split}_jpeg/{split}_offsets; keys: {sorted(keys)}"
    )


def write_image_folder(src: ImageSource, root: str | Path, indices: Sequence[int] | None = None) -> list[Path]:
    """Write images as PNG files under ``root/<label>_<class>/<index>.png``; returns the paths in order."""
    root = Path(root)
    out = []
    for i in range(len(src)) if indices is None else indices:
        label = int(src.labels[i])
        # the label index keeps folders unique and in label order even if names clash once '/' is replaced
        cls = f"{label:04d}_" + "".join(ch if ch.isalnum() or ch in "-_.()#" else "_" for ch in src.classes[label])
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        img = src.get(int(i))
        pil = Image.fromarray(img) if isinstance(img, np.ndarray) else img
        f = d / f"{int(i):06d}.png"
        pil.save(f)
        out.append(f)
    return out
