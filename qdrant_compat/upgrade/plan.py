"""``upgrade plan``: read the collection and the lineage, choose and explain a strategy, change nothing."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdrant_compat.cards import ModelCard
from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageReader, ImageRefs, is_remote
from qdrant_compat.enums import Layout, Phase, Priority, Relation, Strategy
from qdrant_compat.errors import CorruptArtifactError, FingerprintMismatchError, InvalidArgumentError, UpgradeError
from qdrant_compat.metadata import CompatMeta, JobState
from qdrant_compat.registry import Registry
from qdrant_compat.results import Result
from qdrant_compat.store import record_vector
from qdrant_compat.upgrade.state import new_job_id

log = logging.getLogger(__name__)


@dataclass(repr=False)
class UpgradePlan(Result):
    """``upgrade plan``: the strategy chosen, why, and the work it means. Nothing is changed by planning."""

    collection: str
    source: str
    source_model: str
    target: str
    target_model: str
    strategy: Strategy
    converter: str | None
    reasons: list[str] = field(default_factory=list)
    points: int = 0
    already_filled: int = 0
    images_missing: int = 0
    images_checked: int = 0
    seconds_per_point: float = 0.0
    estimated_seconds: float = 0.0
    bct_edge: bool = False
    layout: Layout = Layout.IN_PLACE
    green: str | None = None  # blue-green: the new collection
    alias: str | None = None  # blue-green: the alias cutover switches
    aliases: list[str] = field(default_factory=list)  # aliases that point at the collection now

    def new_job(self, target_fingerprint: str, *, priority: Priority | str, image_field: str, phase: Phase,
                **layout: Any) -> JobState:
        """The job that carries this plan out (a fresh id; ``layout``: the blue-green fields)."""
        return JobState(id=new_job_id(), source=self.source, source_model=self.source_model, target=self.target,
                        target_model=self.target_model, target_fingerprint=target_fingerprint, strategy=self.strategy,
                        converter=self.converter, priority=Priority.parse(priority, "priority"), image_field=image_field,
                        phase=phase, **layout)


def green_name(blue: str, target_model: str) -> str:
    """The default name of the green collection: ``<blue>--<model>-<version>`` in allowed characters."""
    return re.sub(r"[^A-Za-z0-9_.:\-]", "-", f"{blue}--{target_model.replace('@', '-')}")[:255]


def check_source_fingerprint(client: CompatClient, meta: CompatMeta, collection: str, vector: str) -> ModelCard:
    """The registry's card of the model recorded for ``vector``, which must have the recorded fingerprint.

    Raises:
        FingerprintMismatchError: the collection's vectors were made by other bytes than the registry's model
            of that name and version (converting or adopting from them would write vectors of the wrong space).
    """
    entry = meta.vectors[vector]
    card = client.registry.verified_card(entry.model)
    if card.fingerprint != entry.fingerprint:
        raise FingerprintMismatchError(
            f"collection '{collection}' records vector '{vector}' as {entry.model} with fingerprint "
            f"{entry.fingerprint[:12]}…, but the registry's {entry.model} is {card.fingerprint[:12]}…: the stored "
            "vectors are not that model's; fix the metadata (collection adopt) or register the right model"
        )
    return card


def bct_evidence(card: ModelCard, stored: ModelCard, registry: Registry) -> dict[str, Any] | None:
    """The evidence of a measured bct edge from ``card`` to ``stored`` (from the card's lineage), if any, and if
    ``registry`` measured it (or was told to trust it): evidence of unknown origin is never acted on."""
    lin = card.lineage
    if lin.relation == Relation.BCT and lin.parent == stored.ref and lin.parent_fingerprint == stored.fingerprint \
            and lin.evidence and registry.vouches_for(card):
        return dict(lin.evidence)
    return None


def source_vector(meta: CompatMeta) -> str:
    return meta.read


def plan_upgrade(
    client: CompatClient,
    collection: str,
    target: ModelCard | str,
    *,
    strategy: Strategy | str | None = None,
    converter: str | None = None,
    image_field: str = "image_path",
    sample: int = 200,
    images: ImageReader | None = None,
    layout: Layout | str | None = None,
    into: str | None = None,
    alias: str | None = None,
    meta: CompatMeta | None = None,
) -> UpgradePlan:
    """Choose a strategy to move ``collection`` to ``target``; nothing is changed.

    Preference: ``adopt`` when the target has a measured bct edge to the stored model whose criterion held
    (no vector is rewritten); ``convert`` when an old->new converter is registered (vectors rewritten
    without images); ``backfill`` otherwise (re-extraction from the images named in the payload).

    Layout: ``in_place`` adds the new model's named vector to the collection; ``blue_green`` fills a new
    collection (``into``, default ``<collection>--<model>-<version>``) and switches ``alias`` at cutover. By
    default, in place where the backend can add a named vector (embedded store, server >= 1.18), else
    blue-green. ``collection`` may be an alias (then it is the alias switched).

    Raises:
        UpgradeError: the collection already holds the target, or the asked strategy is impossible.
    """
    card = client.card(target)
    named = collection
    collection = client.store.resolve(collection)
    if named != collection and alias is None:
        alias = named
    meta = meta if meta is not None else client.get_meta(collection)  # the caller's fresh read, or one here
    src = source_vector(meta)
    src_entry = meta.vectors[src]
    src_card = check_source_fingerprint(client, meta, collection, src)
    strategy = Strategy.parse(strategy, "strategy") if strategy is not None else None
    reader = images or ImageRefs()
    if src_entry.model == card.ref:
        raise UpgradeError(f"collection '{collection}' already serves {card.ref} from vector '{src}'")
    reasons: list[str] = []
    ev = bct_evidence(card, src_card, client.registry)
    if ev is None and card.lineage.evidence and card.lineage.parent == src_card.ref:
        claimed = card.lineage.evidence
        reasons.append(f"{card.ref}'s card claims compatibility evidence (criterion_met: {claimed.get('criterion_met')}) "
                       "that this registry did not measure: shown, not acted on. Measure it here with 'evaluate --record', "
                       "or register the card with --trust-evidence")
    gate = card.training.get("gate") if card.lineage.parent == src_card.ref else None
    gate_failed = isinstance(gate, dict) and gate.get("criterion_met") is False
    bct_ok = ev is not None and ev.get("criterion_met") is True and not gate_failed
    if gate_failed:
        assert isinstance(gate, dict)
        reasons.append(f"{card.ref} failed its training-time compatibility gate (new/old {float(gate['new_old']):.1f} vs "
                       f"old/old {float(gate['old_old']):.1f} on {gate['holdout_images']} held-out images): not adopting")
    convs = client.registry.find_converters(src_card, card)
    if converter:
        conv_card = client.registry.get_converter(converter).card
        if conv_card.source_fingerprint != src_card.fingerprint or conv_card.target_fingerprint != card.fingerprint:
            raise InvalidArgumentError(
                f"converter {converter} maps {conv_card.source} -> {conv_card.target}, not {src_card.ref} -> {card.ref}"
            )
    elif convs:
        converter = max(convs, key=lambda c: c.fit.get("val_cosine", 0.0)).id
    if ev is not None and ev.get("criterion_met") is not True:
        reasons.append(f"{card.ref} has a bct edge to {src_card.ref} but its recorded criterion failed "
                       f"(cross top-1 {float(ev.get('cross_top1', float('nan'))):.1f} vs old/old "
                       f"{float(ev.get('old_top1', float('nan'))):.1f}): not adopting")
    elif ev is None and card.lineage.parent == src_card.ref and not card.lineage.evidence:
        reasons.append(f"{card.ref} names {src_card.ref} as parent but carries no measured evidence "
                       "(run 'evaluate --record' first to adopt without rewriting)")
    if strategy is None:
        if bct_ok and ev is not None:
            strategy = Strategy.ADOPT
            reasons.append(f"{card.ref} is backward-compatible with {src_card.ref} (measured: cross top-1 "
                           f"{ev.get('cross_top1'):.1f} > old/old {ev.get('old_top1'):.1f}): new queries search the "
                           "stored vectors directly, nothing is rewritten; backfill later for full new/new quality")
        elif converter:
            strategy = Strategy.CONVERT_BACKFILL
            reasons.append(f"converter {converter} maps {src_card.ref} -> {card.ref}: stored vectors are rewritten "
                           "without images first, then re-extracted from images in priority order where they exist")
        else:
            strategy = Strategy.BACKFILL
            reasons.append(f"no bct edge and no converter from {src_card.ref} to {card.ref}: every point is "
                           f"re-extracted from the image named in payload field '{image_field}'")
    if strategy.converts and not converter:
        raise UpgradeError(f"strategy {strategy} needs a converter from {src_card.ref} to {card.ref}; fit one with "
                           "'converter fit' or choose --strategy backfill")
    if strategy == Strategy.ADOPT and not bct_ok:
        raise UpgradeError(f"strategy adopt needs a measured bct edge from {card.ref} to {src_card.ref} whose "
                           "criterion held; run 'evaluate --record' or choose convert/backfill")
    total = client.store.count(collection)
    filled = client.count_with_vector(collection, card.ref) if card.ref in meta.vectors else 0
    plan = UpgradePlan(collection=collection, source=src, source_model=src_card.ref, target=card.ref,
                       target_model=card.ref, strategy=strategy, converter=converter, reasons=reasons,
                       points=total, already_filled=filled, bct_edge=bct_ok,
                       aliases=client.store.aliases_of(collection))
    _choose_layout(client, plan, meta, Layout.parse(layout, "layout") if layout is not None else None, into, alias)
    if strategy.extracts:
        _check_images(client, collection, image_field, plan, sample, reader)
    _estimate(client, collection, plan, card, image_field, reader)
    return plan


def _choose_layout(client: CompatClient, plan: UpgradePlan, meta: CompatMeta, layout: Layout | None, into: str | None,
                   alias: str | None) -> None:
    from qdrant_compat.store import MIN_SERVER_FOR_NAMED_VECTORS, check_collection_name
    caps = client.store.capabilities()
    if plan.strategy == Strategy.ADOPT:
        if layout == Layout.BLUE_GREEN:
            raise UpgradeError("adopt writes no vector: it needs no new collection (use layout in_place)")
        layout = Layout.IN_PLACE
    elif layout is None:
        in_place_ok = caps.named_vector_changes or plan.target in meta.vectors
        layout = Layout.IN_PLACE if in_place_ok else Layout.BLUE_GREEN
        if layout == Layout.BLUE_GREEN:
            plan.reasons.append(
                f"this Qdrant server is {caps.version}: adding a named vector in place needs >= "
                f"{'.'.join(map(str, MIN_SERVER_FOR_NAMED_VECTORS))}, so the upgrade is blue-green")
    elif layout == Layout.IN_PLACE and not caps.named_vector_changes and plan.target not in meta.vectors:
        raise UpgradeError(f"this Qdrant server is {caps.version}: a named vector cannot be added in place (needs >= "
                           f"{'.'.join(map(str, MIN_SERVER_FOR_NAMED_VECTORS))}); use layout blue_green")
    plan.layout = layout
    if layout != Layout.BLUE_GREEN:
        return
    plan.green = check_collection_name(into or green_name(plan.collection, plan.target_model))
    if client.store.exists(plan.green):
        plan.already_filled = client.count_with_vector(plan.green, plan.target)
    plan.alias = alias or (plan.aliases[0] if len(plan.aliases) == 1 else None)
    plan.reasons.append(
        f"blue-green: '{plan.green}' is created with named vectors (the old model's, copied, and '{plan.target}') and "
        f"filled while '{plan.collection}' keeps serving; writes through qdrant-compat reach both; cutover switches "
        f"{('alias ' + repr(plan.alias)) if plan.alias else 'the alias'} in one request, rollback switches it back, "
        f"cleanup drops '{plan.collection}' "
        "after a backup")
    if plan.source == "":
        plan.reasons.append(
            f"'{plan.collection}' holds one unnamed vector; '{plan.green}' holds named vectors only, the old one as "
            f"'{plan.source_model}': after the cutover, applications that query through the alias with plain "
            f"qdrant-client must name the vector (using='{plan.target}' for the new model, '{plan.source_model}' for "
            "the old); queries through qdrant-compat need no change")
    if plan.alias is None:
        step = f"qdrant-compat collection alias {plan.collection}-live {plan.collection}"
        plan.reasons.append(
            f"applications query '{plan.collection}' by its own name" + (f" (aliases: {', '.join(plan.aliases)})"
                                                                          if plan.aliases else "")
            + f", and Qdrant cannot rename a collection: one-time step first: '{step}', point the applications at "
            f"'{plan.collection}-live', then run with --alias {plan.collection}-live")
    elif plan.alias not in plan.aliases:
        plan.reasons.append(f"alias '{plan.alias}' does not exist yet: 'upgrade run' creates it pointing at "
                            f"'{plan.collection}'; point the applications at it before the cutover")


REMOTE_PROBES = 64  # remote references asked of their server before a run (a sample; HEAD requests)


def _check_images(client: CompatClient, collection: str, field_: str, plan: UpgradePlan, sample: int,
                  reader: ImageReader) -> None:
    """Count points whose source image is missing (all of them for small collections, else a sample). Local paths
    are checked on disk; remote references (``http(s)://``, fsspec) are probed on a seeded sample of at most
    :data:`REMOTE_PROBES`, with a HEAD request each, and the share extrapolated."""
    from concurrent.futures import ThreadPoolExecutor

    recs, _ = client.store.scroll(collection, limit=max(plan.points, 1) if plan.points <= 20000 else sample,
                                  with_payload=[field_], with_vectors=False)
    refs = [(r.payload or {}).get(field_) for r in recs]
    remote = [r for r in refs if is_remote(r)]
    local = [r for r in refs if not is_remote(r)]
    missing_share = sum(1 for r in local if not reader.exists(r)) / max(len(refs), 1)
    probe = getattr(reader, "probe", None)
    probed = 0
    if remote and probe is not None:
        rng = np.random.default_rng(0)
        pick = [remote[i] for i in rng.choice(len(remote), size=min(REMOTE_PROBES, len(remote)), replace=False)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            dead = sum(1 for ok in pool.map(probe, pick) if not ok)
        probed = len(pick)
        missing_share += dead / probed * len(remote) / max(len(refs), 1)
    plan.images_checked = len(local) + probed
    plan.images_missing = int(round(missing_share * plan.points))
    if plan.images_missing:
        how = "counted" if len(recs) == plan.points and not remote else "estimated from a sample"
        if probed:
            how += f"; {probed} of {len(remote)} remote references asked of their server"
        plan.reasons.append(f"{plan.images_missing} point(s) have no readable image in '{field_}' ({how}): they keep "
                            "being served through the compatible route and are reported, never dropped")


def _estimate(client: CompatClient, collection: str, plan: UpgradePlan, card: ModelCard, image_field: str,
              reader: ImageReader) -> None:
    """Seconds per point, measured on a sample (unreadable images in the sample are skipped, not fatal)."""
    if plan.strategy == Strategy.ADOPT:
        plan.seconds_per_point, plan.estimated_seconds = 0.0, 0.0
        return
    from qdrant_compat.runtime.embedder import Embedder

    recs, _ = client.store.scroll(collection, limit=32, with_payload=[image_field],
                                  with_vectors=[plan.source] if plan.source else True)
    if not recs:
        return
    per = 0.0
    if plan.converter:
        vecs = np.asarray([record_vector(r, plan.source) for r in recs], np.float32)
        t0 = time.perf_counter()
        client.converters.apply(plan.converter, vecs)
        per += (time.perf_counter() - t0) / len(recs)
    if plan.strategy != Strategy.CONVERT:
        images, read_s = [], 0.0
        for r in recs:  # only readable images are timed: a dead host's retries say nothing of the rate
            t0 = time.perf_counter()
            try:
                images.append(reader.read((r.payload or {}).get(image_field)))
            except (CorruptArtifactError, InvalidArgumentError):
                continue
            read_s += time.perf_counter() - t0
            if len(images) == 8:
                break
        if images:
            t0 = time.perf_counter()
            Embedder(client.registry.get_model(card.ref)).embed(images)
            per += (read_s + time.perf_counter() - t0) / len(images)
    plan.seconds_per_point = per
    plan.estimated_seconds = per * max(plan.points - plan.already_filled, 0)
