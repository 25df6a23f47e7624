"""``upgrade run``: start or resume a collection's upgrade job, in the layout it has (or the plan chooses).

The orchestration only: the recorded job's layout resumes it (:mod:`qdrant_compat.upgrade.layouts`); otherwise a
plan is made and its layout starts a new job. How a vector is filled, batch by batch and resumable, is
:mod:`qdrant_compat.upgrade.fill`.
"""

from __future__ import annotations

from qdrant_compat.cards import ModelCard
from qdrant_compat.client import CompatClient
from qdrant_compat.data.images import ImageReader
from qdrant_compat.engines.base import Engine
from qdrant_compat.enums import Layout, Priority, Strategy
from qdrant_compat.errors import InvalidArgumentError, UpgradeError
from qdrant_compat.upgrade.fill import DEFAULT_IMAGE_FIELD, FillOptions, ProgressFn, RunReport
from qdrant_compat.upgrade.layouts import LAYOUTS, layout_for
from qdrant_compat.upgrade.plan import plan_upgrade
from qdrant_compat.upgrade.state import DEFAULT_LOCK_TTL, make_owner

__all__ = ["RunReport", "run_upgrade"]


def run_upgrade(
    client: CompatClient,
    collection: str,
    target: ModelCard | str | None = None,
    *,
    strategy: Strategy | str | None = None,
    converter: str | None = None,
    priority: Priority | str = Priority.UNCERTAINTY,
    image_field: str | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    owner: str | None = None,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    max_batches: int | None = None,
    dry_run: bool = False,
    retry_missing: bool = False,
    seed: int = 0,
    images: ImageReader | None = None,
    read_workers: int = 2,
    layout: Layout | str | None = None,
    into: str | None = None,
    alias: str | None = None,
    engine: Engine | None = None,
) -> RunReport:
    """Start or resume the collection's upgrade job and fill the target vector.

    Args:
        collection: the collection, or an alias of it.
        target: the model to upgrade to; optional when resuming a recorded job.
        strategy, converter: override the plan's choice (see :func:`plan_upgrade`).
        priority: backfill order: ``uncertainty`` (the old model's least confident points first),
            ``random`` or ``id``.
        image_field: the payload field holding each point's image reference (default ``image_path``); given when
            resuming a job started with another field, it replaces the job's and the points marked missing under
            the old field are tried again.
        max_batches: stop after this many batches (the job stays resumable).
        dry_run: plan only; nothing is written.
        images: where backfill reads the images points reference (default: local paths).
        read_workers: threads that read, decode and preprocess images while the model embeds and the writer
            writes (a pipeline with bounded queues); 0 runs the stages one after another.
        layout: ``in_place`` (a second named vector) or ``blue_green`` (a new collection, an alias switches);
            default: in place where the backend can add a named vector, else blue-green.
        into, alias: blue-green only: the new collection's name and the alias to switch (see :func:`plan_upgrade`).
        engine: where images are decoded and embedded and vectors converted: None (a
            :class:`~qdrant_compat.engines.local.LocalEngine` with ``read_workers`` threads) or another
            :class:`~qdrant_compat.engines.base.Engine`, such as a :class:`~qdrant_compat.engines.ray_data.RayEngine`.
            Marks, stamps and the job are the same either way.

    Raises:
        JobLockedError: another live process runs the job.
        UpgradeError: a conflicting unfinished job, or an impossible strategy.
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    collection = client.store.resolve(collection)
    fill = FillOptions(owner=owner or make_owner(), batch_size=batch_size, progress=progress, lock_ttl=lock_ttl,
                       max_batches=max_batches, retry_missing=retry_missing, seed=seed, images=images,
                       read_workers=read_workers, engine=engine, image_field=image_field)
    target_ref = client.card(target).ref if target is not None else None
    meta = client.get_meta(collection)  # read once here; the layout and the plan work from it
    rep = layout_for(meta.job).resume(client, collection, meta, fill, target_ref=target_ref, strategy=strategy,
                                      dry_run=dry_run)
    if rep is not None:
        return rep
    if target is None:
        raise UpgradeError(f"collection '{collection}' has no upgrade job to resume; name the target model")
    field = image_field or DEFAULT_IMAGE_FIELD
    plan = plan_upgrade(client, collection, target, strategy=strategy, converter=converter, image_field=field,
                        layout=layout, into=into, alias=alias, meta=meta)
    return LAYOUTS[plan.layout].start(client, collection, plan, fill, priority=priority, image_field=field,
                                      dry_run=dry_run, meta=meta)
