"""Two independently trained models bridged by transformation heads (Tiny-ImageNet, P1 setting).

    python examples/convert_independent_models/run.py [--data DIR] [--kind mlp] [--work convert_output]

The old Lite0 model indexed the gallery; a Lite2 model was trained with no thought of compatibility. A head
fitted on paired train-split embeddings either rewrites the stored vectors into the new space (old->new,
``convert``) or maps new queries into the old space (new->old adapter). Both run through Qdrant here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from p1_models import NEW_BACKBONE, OLD_BACKBONE, SEEN, load, top1_through_qdrant, train_register  # noqa: E402

from qdrant_compat import CompatClient, Registry  # noqa: E402
from qdrant_compat.bridges import fit_and_register  # noqa: E402
from qdrant_compat.runtime.embedder import Embedder  # noqa: E402
from qdrant_compat.upgrade import cutover, run_upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--work", default="convert_output")
    ap.add_argument("--kind", default="mlp", choices=["linear", "procrustes", "lowrank", "mlp"])
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    registry = Registry(work / "registry")
    train, test, f = load(args.data)
    y, classes = np.asarray(train.labels), [str(c) for c in train.classes]
    seen = y < SEEN
    old = train_register(registry, work, "tin", "1", OLD_BACKBONE, f[OLD_BACKBONE]["train"][seen], y[seen], classes[:SEEN],
                         epochs=args.epochs)
    new = train_register(registry, work, "tin-indep", "2", NEW_BACKBONE, f[NEW_BACKBONE]["train"], y, classes, epochs=args.epochs)
    with torch.no_grad():  # paired train-split embeddings (what both ONNX files give on the train images)
        a = old.embed_features(torch.from_numpy(f[OLD_BACKBONE]["train"])).numpy()
        b = new.embed_features(torch.from_numpy(f[NEW_BACKBONE]["train"])).numpy()
    fwd = fit_and_register(registry, "tin@1", "tin-indep@2", args.kind, src=a, dst=b, labels=y)
    back = fit_and_register(registry, "tin-indep@2", "tin@1", args.kind, direction="new_to_old", src=b, dst=a, labels=y)
    print(f"heads: {fwd.id} (held-out top-1 retention {fwd.fit['holdout']['top1_retention']:.2f}), {back.id}")
    yv = np.asarray(test.labels)
    e_old = Embedder(registry.get_model("tin@1"), batch_size=128).embed_source(test)
    e_new = Embedder(registry.get_model("tin-indep@2"), batch_size=128).embed_source(test)
    client = CompatClient(path=str(work / "qdrant"), registry=registry)
    client.create_collection("gallery", "tin@1")
    client.upsert("gallery", "tin@1", e_old, ids=list(range(len(yv))))
    print(f"old/old through Qdrant: top-1 {top1_through_qdrant(client, 'gallery', 'tin@1', e_old, yv):.1f}")
    print(f"new queries through the new->old adapter (adapt/old): top-1 {top1_through_qdrant(client, 'gallery', 'tin-indep@2', e_new, yv):.1f}")
    rep = run_upgrade(client, "gallery", "tin-indep@2", strategy="convert", converter=fwd.id, batch_size=1024)
    print(f"converted {rep.processed} stored vectors in {rep.seconds:.1f}s, no image read")
    cutover(client, "gallery", allow_partial=True)
    print(f"new queries on the converted gallery (indep/convert(old)): top-1 {top1_through_qdrant(client, 'gallery', 'tin-indep@2', e_new, yv):.1f}")
    client.close()


if __name__ == "__main__":
    main()
