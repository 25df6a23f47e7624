"""qdrant-compat quickstart on real images (Omniglot) and the embedded Qdrant: the whole upgrade story.

    make demo        # or: python examples/quickstart/demo.py [--out demo_output] [--epochs 8]

1. v1: train, export to ONNX, register, index a gallery into a versioned collection, query it.
2. v2 trained backward-compatibly (BCT) on more classes: it searches the untouched v1 gallery directly,
   once ``evaluate`` has measured and recorded the edge; an independently trained v2 is refused.
3. The independent v2 reaches the gallery anyway: plan -> convert (old->new head, no images) -> partial
   backfill from the images with queries running -> cutover -> cleanup, with figures at every stage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from qdrant_compat import CompatClient, IncompatibleModelError, InputSpec, Registry
from qdrant_compat.bridges import fit_and_register
from qdrant_compat.data import ImageFolder, load_npz, write_image_folder
from qdrant_compat.evaluation import evaluate_registered, record_bct_evidence
from qdrant_compat.indexing import index_folder
from qdrant_compat.models import ModelConfig
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.training import TrainConfig, Trained, default_losses, train_and_register
from qdrant_compat.upgrade import cleanup, cutover, plan_upgrade, run_upgrade, upgrade_status

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "data" / "omniglot_small.npz"
SPEC = InputSpec(size=28, channels=1, mean=(0.92,), std=(0.27,))
V1_CLASSES, V2_CLASSES = 100, 150


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def first_classes(src, n):  # type: ignore[no-untyped-def]
    sub = src.subset(np.flatnonzero(src.labels < n))
    sub.classes = src.classes[:n]
    return sub


def make_version(registry: Registry, src, out: Path, name: str, version: str, *, seed: int, epochs: int,  # type: ignore[no-untyped-def]
          old: str | None = None, gate_data=None) -> Trained:
    """Train, export to ONNX (parity-checked) and register; with ``old``, backward-compatibly, the gate measuring
    new/old vs old/old on ``gate_data`` after every epoch."""
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, losses=default_losses(old=old is not None))
    done = train_and_register(src, out / "checkpoints" / f"{name}-{version}", registry=registry, spec=SPEC,
                              model=ModelConfig(backbone="smallcnn", in_channels=1, dim=64), config=cfg,
                              old_model=old, gate_data=gate_data, register_as=f"{name}@{version}",
                              dataset="omniglot_small")
    card = done.card
    assert card is not None
    print(f"trained {card.ref}{' (BCT, parent ' + old + ')' if old else ''} on {len(src)} images / "
          f"{len(src.classes)} classes in {done.result.seconds:.1f}s; ONNX parity {done.export_max_abs_diff:.1e}; "
          f"fingerprint {card.fingerprint[:12]}…")
    if done.gate is not None:
        print(f"  gate: {done.gate.sentence()}")
    return done


def top1_through_qdrant(client: CompatClient, collection: str, model: str, paths: list[Path]) -> float:
    """Leave-one-out top-1: every gallery image queries the collection; its own point is skipped."""
    from qdrant_compat.indexing import point_id_for

    vecs = Embedder(client.registry.get_model(model)).embed([str(p) for p in paths])
    hits = client.query_batch(collection, model, vecs, limit=2, with_payload=True)
    ok = 0
    for p, hs in zip(paths, hits, strict=True):
        best = next(h for h in hs if str(h.id) != point_id_for(p))
        ok += best.payload["class"] == p.parent.name
    return 100.0 * ok / len(paths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default="demo_output", help="working folder (recreated)")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.time()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    registry = Registry(out / "registry")

    step("1. data: the Omniglot fixture (real handwritten characters, MIT licence)")
    train, test = load_npz(FIXTURE, "train"), load_npz(FIXTURE, "test")
    gallery_dir = out / "gallery"
    write_image_folder(test, gallery_dir, np.flatnonzero(test.labels < V2_CLASSES))
    paths = ImageFolder(gallery_dir).paths
    print(f"gallery: {len(paths)} images of {V2_CLASSES} classes by drawers no model trains on; v1 learns "
          f"{V1_CLASSES} classes, v2 learns all {V2_CLASSES}")

    step("2. v1: train, export to ONNX, register, index")
    make_version(registry, first_classes(train, V1_CLASSES), out, "omniglot", "1", seed=0, epochs=args.epochs)
    client = CompatClient(path=str(out / "qdrant"), registry=registry)
    for coll in ("gallery", "gallery-b"):
        index_folder(client, coll, "omniglot@1", gallery_dir)
    v = client.info("gallery").vectors["omniglot@1"]
    print(f"collections 'gallery' and 'gallery-b': {v.points} points each in vector 'omniglot@1' "
          f"(metadata: model {v.model}, fingerprint {v.fingerprint[:12]}…, dim {v.dim}, {v.distance})")
    old_old = top1_through_qdrant(client, "gallery", "omniglot@1", paths)
    chance = 100.0 * 4 / (len(paths) - 1)
    print(f"v1 queries on the v1 gallery (old/old): top-1 {old_old:.1f}%   (chance {chance:.1f}%)")

    step("3. v2 trained backward-compatibly with the frozen v1 (run through its ONNX file)")
    v2_train, v2_test = first_classes(train, V2_CLASSES), first_classes(test, V2_CLASSES)
    v2 = make_version(registry, v2_train, out, "omniglot", "2", seed=0, epochs=args.epochs, old="omniglot@1", gate_data=v2_test)
    synth = v2.summary.synthesized_rows
    print(f"old classifier rows: {V2_CLASSES - synth} kept, {synth} synthesised for new classes")
    make_version(registry, v2_train, out, "omniglot-indep", "2", seed=1, epochs=args.epochs)
    rep, emb = evaluate_registered(registry, ["omniglot@1", "omniglot@2", "omniglot-indep@2"], v2_test,
                                   seen_classes=set(range(V1_CLASSES)))
    card = record_bct_evidence(registry, "omniglot@2", rep, emb)
    ev = card.lineage.evidence
    c = rep.cells
    print("cross-model test on the gallery images (top-1 %, all / seen / new classes):")
    for cell in ("omniglot@1/omniglot@1", "omniglot@2/omniglot@1", "omniglot-indep@2/omniglot@1", "omniglot@2/omniglot@2"):
        print(f"  {cell:<30} {c[cell]['top1']:5.1f} / {c[cell]['top1_seen']:5.1f} / {c[cell]['top1_new']:5.1f}")
    print(f"recorded in omniglot@2's card: criterion bct/old > old/old {'MET' if ev['criterion_met'] else 'NOT met'}")
    if ev["criterion_met"]:
        plan = plan_upgrade(client, "gallery", "omniglot@2")
        print(f"upgrade plan for 'gallery': {plan.strategy} — {plan.reasons[-1]}")
        run_upgrade(client, "gallery", "omniglot@2")
        print(f"v2 queries on the untouched v1 gallery through Qdrant (new/old): top-1 "
              f"{top1_through_qdrant(client, 'gallery', 'omniglot@2', paths):.1f}% (v1 alone: {old_old:.1f}%)")
    else:
        print("the criterion failed, so the client refuses v2 queries on the v1 vectors rather than answer worse")
    try:
        client.query("gallery", "omniglot-indep@2", Embedder(registry.get_model("omniglot-indep@2")).embed([str(paths[0])]))
        print("UNEXPECTED: the independent model's query was accepted")
        return 1
    except IncompatibleModelError as exc:
        print(f"independent v2 refused: {str(exc)[:150]}…")

    step("4. the independent v2 on 'gallery-b': plan, convert, partial backfill, cutover, cleanup")
    conv = fit_and_register(registry, "omniglot@1", "omniglot-indep@2", "mlp", images=v2_train,
                            options={"hidden": 256, "epochs": 40})
    print(f"fitted converter {conv.id}: held-out cosine {conv.fit['val_cosine']:.3f}, "
          f"held-out top-1 retention {conv.fit['holdout']['top1_retention']:.2f}")
    plan = plan_upgrade(client, "gallery-b", "omniglot-indep@2")
    print(f"plan: {plan.strategy}; {plan.points} points, {plan.images_missing} missing images, "
          f"estimated {plan.estimated_seconds:.1f}s")
    run_upgrade(client, "gallery-b", "omniglot-indep@2", strategy="convert", batch_size=128)
    print(f"after conversion (no image touched): indep/convert(old) top-1 "
          f"{top1_through_qdrant(client, 'gallery-b', 'omniglot-indep@2', paths):.1f}%")
    run_upgrade(client, "gallery-b", "omniglot-indep@2", strategy="convert+backfill", batch_size=len(paths) // 4, max_batches=2)
    st = upgrade_status(client, "gallery-b").vectors["omniglot-indep@2"]
    print(f"backfill half done ({st.extracted} extracted, {st.converted} converted), queries running: top-1 "
          f"{top1_through_qdrant(client, 'gallery-b', 'omniglot-indep@2', paths):.1f}%")
    run_upgrade(client, "gallery-b", batch_size=128)
    cutover(client, "gallery-b")
    new_new = top1_through_qdrant(client, "gallery-b", "omniglot-indep@2", paths)
    print(f"backfill complete, cut over: new/new top-1 {new_new:.1f}% (v1 was {old_old:.1f}%)")
    res = cleanup(client, "gallery-b", yes=True)
    print(f"cleanup dropped vector '{res.drops}' after a backup at {res.backup}")
    print(f"final metadata of 'gallery-b': vectors {list(client.get_meta('gallery-b').vectors)}")
    client.close()
    print(f"\ndemo finished in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
