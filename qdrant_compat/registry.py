"""On-disk artifact store.

Layout::

    <root>/models/<name>/<version>/model.onnx        the extractor (image tensor -> embedding)
                                  /card.json         ModelCard (fingerprint = sha256 of model.onnx)
                                  /classifier.safetensors   cosine-classifier weights (optional)
    <root>/converters/<id>/converter.onnx, card.json, head/ (config.json + weights.safetensors)
    <root>/evidence.key                              this registry's key for the evidence it measured (0600)

Versions are immutable: registering ``name@version`` again with other bytes is an error. Every load
re-hashes the ONNX file, so a file changed behind the registry's back is caught, never served.

Seals prove a card was not edited; they do not prove where its compatibility evidence came from (anyone can
write a card whose lineage claims ``criterion_met: true`` and seal it). Evidence this registry measured
(``evaluate --record``, :func:`~qdrant_compat.evaluation.record_bct_evidence`) is signed with ``evidence.key``
(HMAC-SHA256 over the model's and its parent's fingerprints and the figures); only signed evidence is acted on
(adopt, routing). Evidence that arrives with a registered card is kept and shown, and acted on only when the
registration says so explicitly (``trust_evidence=True``, ``model register --trust-evidence``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_compat._config import to_dict
from qdrant_compat.cards import ConverterCard, ModelCard, check_name, parse_ref, sha256_file
from qdrant_compat.errors import (
    CorruptArtifactError,
    FingerprintMismatchError,
    InvalidArgumentError,
    ModelNotFoundError,
)

log = logging.getLogger(__name__)
DEFAULT_REGISTRY = "qdrant_compat_registry"
EVIDENCE_KEY_FILE = "evidence.key"
SIGNATURE = "signature"  # the evidence dict's key holding this registry's signature
REGISTRY_ENV = "QDRANT_COMPAT_REGISTRY"


@dataclass(frozen=True)
class RegisteredModel:
    card: ModelCard
    onnx_path: Path
    classifier_path: Path | None

    def classifier_weight(self) -> np.ndarray | None:
        """The cosine classifier's rows ``(num_classes, dim)``, or None if none was registered."""
        if self.classifier_path is None:
            return None
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.classifier_path))["weight"]
        except Exception as exc:  # safetensors raises several types for bad files
            raise CorruptArtifactError(f"{self.classifier_path}: unreadable classifier weights ({exc})") from None


@dataclass(frozen=True)
class RegisteredConverter:
    card: ConverterCard
    onnx_path: Path
    head_dir: Path


class Registry:
    """Models and converters by reference, verified on every load.

    Example:
        >>> reg = Registry("artifacts")
        >>> card = reg.register_model("model.onnx", card)
        >>> reg.get_model("omniglot@1").onnx_path
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)
        self._verified: dict[tuple[str, str], tuple[tuple[int, ...], ModelCard]] = {}

    def _where_hint(self) -> str:
        """For a registry folder that does not exist: where else it could be."""
        if self.root.exists():
            return ""
        return f"; {self.root} does not exist: pass --registry DIR or set {REGISTRY_ENV}"

    # -------------------------------------------------------------- evidence
    def _evidence_key(self, *, create: bool) -> bytes | None:
        path = self.root / EVIDENCE_KEY_FILE
        if not path.exists() and create:
            _ensure(self.root)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _evidence_digest(key: bytes, card: ModelCard, evidence: dict[str, Any]) -> str:
        body = json.loads(json.dumps({k: v for k, v in evidence.items() if k != SIGNATURE}))  # as stored in card.json
        msg = json.dumps({"model": card.fingerprint, "parent": card.lineage.parent,
                          "parent_fingerprint": card.lineage.parent_fingerprint, "evidence": body},
                         sort_keys=True, separators=(",", ":"))
        return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()

    def sign_evidence(self, card: ModelCard, evidence: dict[str, Any]) -> dict[str, Any]:
        """``evidence`` for ``card``'s lineage, signed by this registry (the key is made on first use).

        @private
        """
        key = self._evidence_key(create=True)
        if key is None:
            raise CorruptArtifactError(f"{self.root / EVIDENCE_KEY_FILE} is unreadable; remove it to make a new key "
                                       "(evidence signed with the old one is then no longer acted on)")
        return {**{k: v for k, v in evidence.items() if k != SIGNATURE}, SIGNATURE: self._evidence_digest(key, card, evidence)}

    def vouches_for(self, card: ModelCard) -> bool:
        """Whether ``card``'s lineage evidence was measured (or explicitly trusted) by this registry."""
        ev = card.lineage.evidence
        sig = ev.get(SIGNATURE) if ev else None
        if not isinstance(sig, str):
            return False
        key = self._evidence_key(create=False)
        return key is not None and hmac.compare_digest(sig, self._evidence_digest(key, card, ev))

    # ---------------------------------------------------------------- models
    def _model_dir(self, name: str, version: str) -> Path:
        return self.root / "models" / name / version

    def register_model(
        self,
        onnx_path: str | Path,
        card: ModelCard,
        classifier: np.ndarray | str | Path | None = None,
        *,
        exist_ok: bool = True,
        trust_evidence: bool = False,
    ) -> ModelCard:
        """Copy ``onnx_path`` into the registry under ``card.ref`` and return the card with its fingerprint.

        ``trust_evidence``: sign the compatibility evidence the card brings in its lineage, so it is acted on as if
        measured here; by default it is kept, shown, and not acted on (re-measure with ``evaluate --record``).

        Raises:
            InvalidArgumentError: the version exists with different bytes (versions are immutable).
        """
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise InvalidArgumentError(f"ONNX file {onnx_path} does not exist")
        fp = sha256_file(onnx_path)
        if card.fingerprint and card.fingerprint != fp:
            raise FingerprintMismatchError(
                f"card for {card.ref} says fingerprint {card.fingerprint[:12]}… but {onnx_path} hashes to {fp[:12]}…"
            )
        card = card.with_(fingerprint=fp)
        dest = self._model_dir(card.name, card.version)
        if dest.exists():
            existing = self.get_model(card.ref)
            if existing.card.fingerprint != fp:
                raise InvalidArgumentError(
                    f"{card.ref} is already registered with fingerprint {existing.card.fingerprint[:12]}…; "
                    f"versions are immutable: register these bytes ({fp[:12]}…) under a new version"
                )
            _same_use(existing.card, card)
            if not exist_ok:
                raise InvalidArgumentError(f"{card.ref} is already registered")
            return existing.card
        if card.lineage.evidence:
            ev = self.sign_evidence(card, card.lineage.evidence) if trust_evidence else \
                {k: v for k, v in card.lineage.evidence.items() if k != SIGNATURE}  # another registry's signature means nothing here
            card = card.with_(lineage=dataclasses.replace(card.lineage, evidence=ev))
            if not trust_evidence:
                log.warning("%s brings compatibility evidence this registry did not measure: kept, not acted on "
                            "(re-measure with 'evaluate --record', or register with --trust-evidence)", card.ref)
        card = card.sealed()
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_ensure(self.root)))
        try:
            self._fill_model_dir(tmp, onnx_path, card, classifier)
            _check_copy(tmp / "model.onnx", onnx_path, card)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)  # atomic: a half-written version is never visible
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed registration (disk full, bad classifier) leaves nothing
            raise
        log.info("registered %s (%s…) in %s", card.ref, fp[:12], self.root)
        return card

    def _fill_model_dir(self, tmp: Path, onnx_path: Path, card: ModelCard, classifier: np.ndarray | str | Path | None) -> None:
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        if classifier is not None:
            from safetensors.numpy import save_file

            weight = np.load(classifier) if isinstance(classifier, (str, Path)) else classifier
            weight = np.ascontiguousarray(weight, dtype=np.float32)
            if weight.ndim != 2 or weight.shape[1] != card.dim:
                raise InvalidArgumentError(
                    f"classifier weight must have shape (num_classes, {card.dim}), got {weight.shape}"
                )
            save_file({"weight": weight}, str(tmp / "classifier.safetensors"))
        card.save(tmp / "card.json")

    def get_model(self, ref: str | ModelCard) -> RegisteredModel:
        """Load a model's card and paths, verifying the ONNX fingerprint.

        Raises:
            ModelNotFoundError: not registered (the message lists what is).
            FingerprintMismatchError: the ONNX bytes changed since registration.
        """
        name, version = parse_ref(ref.ref if isinstance(ref, ModelCard) else ref)
        d = self._model_dir(name, version)
        if not (d / "card.json").exists():
            known = ", ".join(c.ref for c in self.list_models()) or "none"
            raise ModelNotFoundError(f"model {name}@{version} is not in registry {self.root} (registered: {known})"
                                     + self._where_hint())
        card = ModelCard.load(d / "card.json")
        if card.seal != card.compute_seal():
            raise CorruptArtifactError(
                f"{d / 'card.json'} was changed after registration (its seal does not match its contents: "
                f"{'no seal' if not card.seal else 'input, dim, distance, classes or lineage edited'}); a model's "
                "contract is immutable: restore the file or register the model under a new version"
            )
        onnx_path = d / "model.onnx"
        if not onnx_path.exists():
            raise CorruptArtifactError(f"{onnx_path} is missing for {card.ref}")
        actual = sha256_file(onnx_path)
        if actual != card.fingerprint:
            raise FingerprintMismatchError(
                f"{card.ref}: {onnx_path} hashes to {actual} but its card records {card.fingerprint}; "
                "the file was changed after registration: restore it or register a new version"
            )
        if isinstance(ref, ModelCard) and ref.fingerprint and ref.fingerprint != card.fingerprint:
            raise FingerprintMismatchError(
                f"{card.ref}: the card given has fingerprint {ref.fingerprint} but the registry holds {card.fingerprint}"
            )
        clf = d / "classifier.safetensors"
        return RegisteredModel(card=card, onnx_path=onnx_path, classifier_path=clf if clf.exists() else None)

    def update_card(self, card: ModelCard) -> None:  # the one way a card changes: re-sealed here
        """Replace a registered card's mutable parts (lineage evidence, training notes); bytes stay."""
        current = self.get_model(card.ref).card
        fixed = ("fingerprint", "dim", "distance", "normalized", "input", "classes", "name", "version")
        changed = [k for k in fixed if getattr(card, k) != getattr(current, k)]
        if changed:
            raise InvalidArgumentError(f"update_card may change only lineage and training notes; {card.ref}'s {changed} "
                                       "are fixed at registration (register a new version instead)")
        path = self._model_dir(card.name, card.version) / "card.json"
        tmp = path.with_suffix(".json.tmp")
        card.sealed().save(tmp)
        os.replace(tmp, path)
        self._verified.pop(parse_ref(card.ref), None)  # another process's change is seen by the file stamp

    def list_models(self) -> list[ModelCard]:
        out = []
        for p in sorted((self.root / "models").glob("*/*/card.json")):
            try:
                out.append(ModelCard.load(p))
            except CorruptArtifactError as exc:
                log.warning("skipping unreadable card: %s", exc)
        return out

    def verified_card(self, ref: str) -> ModelCard:
        """The card of ``ref``, verified as :meth:`get_model` does (seal, ONNX fingerprint) once per state of its
        files: a query or write that names a model does not hash its ONNX file again, and any change to the file
        or the card (size, mtime, a file replaced) makes the next call verify it again. The stamp has the file
        system's timestamp granularity (a few ms): a same-size rewrite within it is seen by :meth:`get_model` only.

        Raises:
            ModelNotFoundError, CorruptArtifactError, FingerprintMismatchError: as :meth:`get_model`.
        """
        key = parse_ref(ref)
        stamp = self.model_stamp(ref)
        hit = self._verified.get(key)
        if stamp is not None and hit is not None and hit[0] == stamp:
            return hit[1]
        card = self.get_model(ref).card
        if stamp is not None:
            self._verified[key] = (stamp, card)
        return card

    def model_stamp(self, ref: str) -> tuple[int, ...] | None:
        """What changes when the model's files do (ONNX and card: inode, size, mtime): the cache key of
        :meth:`verified_card`; None when the model is not registered."""
        d = self._model_dir(*parse_ref(ref))
        try:
            st, cst = (d / "model.onnx").stat(), (d / "card.json").stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, cst.st_ino, cst.st_size, cst.st_mtime_ns

    def converters_stamp(self) -> float:
        """Changes when a converter is registered or removed (the converters folder's mtime; 0 when none)."""
        root = self.root / "converters"
        return root.stat().st_mtime if root.exists() else 0.0

    def has_model(self, ref: str) -> bool:
        name, version = parse_ref(ref)
        return (self._model_dir(name, version) / "card.json").exists()

    # ------------------------------------------------------------ converters
    def register_converter(self, onnx_path: str | Path, head_dir: str | Path, card: ConverterCard) -> ConverterCard:
        check_name(card.id, "converter id")
        fp = sha256_file(onnx_path)
        card = ConverterCard.from_dict({**card.to_dict(), "fingerprint": fp})
        dest = self.root / "converters" / card.id
        if dest.exists():
            existing = self.get_converter(card.id)
            if existing.card.fingerprint != fp:
                raise InvalidArgumentError(
                    f"converter {card.id} already exists with other bytes; choose a new id"
                )
            return existing.card
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_ensure(self.root)))
        try:
            shutil.copyfile(onnx_path, tmp / "converter.onnx")
            shutil.copytree(head_dir, tmp / "head")
            card.save(tmp / "card.json")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("registered converter %s (%s -> %s)", card.id, card.source, card.target)
        return card

    def get_converter(self, conv_id: str) -> RegisteredConverter:
        d = self.root / "converters" / check_name(conv_id, "converter id")
        if not (d / "card.json").exists():
            known = ", ".join(c.id for c in self.list_converters()) or "none"
            raise ModelNotFoundError(f"converter {conv_id} is not in registry {self.root} (registered: {known})"
                                     + self._where_hint())
        card = ConverterCard.load(d / "card.json")
        actual = sha256_file(d / "converter.onnx")
        if actual != card.fingerprint:
            raise FingerprintMismatchError(
                f"converter {conv_id}: converter.onnx hashes to {actual} but its card records {card.fingerprint}"
            )
        return RegisteredConverter(card=card, onnx_path=d / "converter.onnx", head_dir=d / "head")

    def list_converters(self) -> list[ConverterCard]:
        out = []
        for p in sorted((self.root / "converters").glob("*/card.json")):
            try:
                out.append(ConverterCard.load(p))
            except CorruptArtifactError as exc:
                log.warning("skipping unreadable converter card: %s", exc)
        return out

    def find_converters(self, source: ModelCard, target: ModelCard) -> list[ConverterCard]:
        """Converters mapping exactly ``source``'s bytes to ``target``'s bytes."""
        return [
            c
            for c in self.list_converters()
            if c.source_fingerprint == source.fingerprint and c.target_fingerprint == target.fingerprint
        ]


def _same_use(existing: ModelCard, new: ModelCard) -> None:
    """The same bytes registered again must mean the same model: another input spec, dimension or distance
    would embed or search differently under the one name.

    Raises:
        InvalidArgumentError: names the field, both values, and that a new version is the way.
    """
    was, now = to_dict(existing.input), to_dict(new.input)  # plain JSON values: a list and a tuple compare equal
    differ = [k for k in was if was[k] != now.get(k)]
    if differ:
        k = differ[0]
        raise InvalidArgumentError(
            f"{existing.ref} is already registered with input {k} {getattr(existing.input, k)}, these same bytes were "
            f"given {k} {getattr(new.input, k)}: the same graph with other preprocessing is another model; register it "
            "under a new version")
    for field in ("dim", "distance"):
        if getattr(existing, field) != getattr(new, field):
            raise InvalidArgumentError(
                f"{existing.ref} is already registered with {field} {getattr(existing, field)}, these same bytes were given "
                f"{field} {getattr(new, field)}; register it under a new version")


def _check_copy(copied: Path, source: Path, card: ModelCard) -> None:
    """:func:`check_graph` on the registry's copy, which holds ``model.onnx`` alone: a graph whose weights live in
    files beside the source (ONNX external data) fails to load there, and is told how to become one file.

    Raises:
        InvalidArgumentError: the card and the graph disagree, or the graph needs files the copy lacks.
    """
    from qdrant_compat.runtime.onnx import ort_session

    try:
        check_graph(copied, card, name=source.name)
    except CorruptArtifactError as exc:
        try:
            ort_session(source, ["CPUExecutionProvider"])
        except CorruptArtifactError:
            raise exc from None  # not loadable anywhere: a corrupt file, said as such
        raise InvalidArgumentError(
            f"{source} keeps its weights in files beside it (ONNX external data) and loads only from its own folder "
            f"({exc}); save it as one file first: onnx.save(onnx.load(path), 'one.onnx', save_as_external_data=False) "
            "(models under 2 GB)") from None


def probe_output(sess: Any, shape: list[int], name: str, verb: str) -> np.ndarray:
    """Run an ONNX session on a seeded random batch of ``shape``; the first output, which must be finite.

    Raises:
        InvalidArgumentError: the graph cannot run on that input, or emits NaN/inf (not ``verb``).
    """
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    try:
        out = np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    except Exception as exc:  # onnxruntime's own error types
        raise InvalidArgumentError(f"{name} cannot run on input {tuple(shape)} ({exc})") from None
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise InvalidArgumentError(f"{name} produced NaN or infinity on a probe batch: not {verb}")
    return out


def check_graph(onnx_path: Path, card: ModelCard, probe: int = 2, *, name: str | None = None) -> None:
    """The card must describe the ONNX graph: input size/channels where the graph fixes them, and a probe
    batch must come out ``(probe, card.dim)`` and finite.

    Raises:
        InvalidArgumentError: the card and the graph disagree (what each says), or the graph emits NaN/inf.
    """
    from qdrant_compat.runtime.onnx import ort_session

    name = name or onnx_path.name
    sess = ort_session(onnx_path, ["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    want = [probe, card.input.channels, card.input.size, card.input.size]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise InvalidArgumentError(f"{onnx_path} takes a rank-{len(shape)} input {shape}; an image model takes (n, C, H, W)")
    for axis, (got, exp) in enumerate(zip(shape[1:], want[1:], strict=True), start=1):
        if isinstance(got, int) and got != exp:
            raise InvalidArgumentError(
                f"card for {card.ref} says input (n, {card.input.channels}, {card.input.size}, {card.input.size}) but "
                f"{name} fixes axis {axis} to {got} (graph input {shape})"
            )
    out = probe_output(sess, want, name, "registered")
    if out.shape != (probe, card.dim):
        raise InvalidArgumentError(
            f"card for {card.ref} says dim {card.dim} but {name} outputs shape {out.shape} for a batch of {probe}"
        )


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
