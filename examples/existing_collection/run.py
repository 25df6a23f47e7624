"""Starting from an existing collection: a gallery another team indexed with plain qdrant-client (one
unnamed vector) using a model trained with plain torch code, images served over HTTP.

    python examples/existing_collection/run.py [--out existing_output] [--epochs 3]

Steps: the team's model (plain torch, its own ONNX export) -> their collection (plain qdrant-client) ->
``model import`` -> ``collection adopt --verify`` (re-embeds images fetched over HTTP) -> train v2
backward-compatibly from the imported v1 -> ``evaluate --record`` -> ``upgrade plan`` (blue-green: it names the
one-time alias step) -> ``collection alias`` -> ``upgrade run`` (a new collection with named vectors, backfilled from
images over HTTP while the old one serves) -> ``cutover`` (the alias switches) -> queries with v2 through the alias
-> ``rollback`` -> ``cutover`` -> ``cleanup`` (the old collection, backed up, dropped). Everything runs on the
embedded store and a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
import warnings
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image
from qdrant_client import QdrantClient, models

from qdrant_compat.cli.main import cli
from qdrant_compat.data import load_npz, write_image_folder

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "omniglot_small.npz"
MEAN, STD = 0.92, 0.27
CLASSES = 60


class TeamNet(torch.nn.Module):
    """What another team might have trained: a small CNN, 48-d embedding, their own code."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64 * 3 * 3, 48))
        self.fc = torch.nn.Linear(48, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def team_preprocess(img: np.ndarray | Image.Image) -> np.ndarray:
    """The team's own preprocessing: grey, 28 x 28 bilinear, scaled, normalised."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    return (np.asarray(pil.convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.float32) / 255.0 - MEAN) / STD


def team_trains_and_exports(out: Path, epochs: int) -> Path:
    train = load_npz(FIXTURE, "train")
    keep = np.flatnonzero(train.labels < CLASSES)
    x = torch.from_numpy(np.stack([team_preprocess(train.x[i]) for i in keep]))[:, None]
    y = torch.from_numpy(train.labels[keep])
    torch.manual_seed(0)
    net = TeamNet(CLASSES)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(net.state_dict(), out / "team_state_dict.pt")
    # the team's classifier, as `model import --classifier` reads it: one row per class, and the class names
    np.savez(out / "team_classifier.npz", weight=net.fc.weight.detach().numpy(),
             classes=np.asarray(train.classes[:CLASSES]))
    onnx_path = out / "team_embedder.onnx"
    with warnings.catch_warnings():  # the legacy exporter is what many teams' scripts still call; its notice is noise
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.features.eval(), (torch.zeros(1, 1, 28, 28),), str(onnx_path), input_names=["image"],
                          output_names=["vec"], dynamic_axes={"image": {0: "n"}, "vec": {0: "n"}}, dynamo=False)
    return onnx_path


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a):  # type: ignore[no-untyped-def]
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def team_indexes(out: Path, onnx_path: Path, base_url: str | None, paths: list[Path]) -> None:
    """Plain qdrant-client, one unnamed vector, payload = the image URL (or, without ``base_url``, its absolute
    path); vectors from the team's own model."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.stack([team_preprocess(Image.open(p)) for p in paths])[:, None]
    vecs = sess.run(None, {"image": x.astype(np.float32)})[0]
    q = QdrantClient(path=str(out / "qdrant"))
    q.create_collection("products", vectors_config=models.VectorParams(size=vecs.shape[1], distance=models.Distance.COSINE))
    rel = [p.relative_to(out / "gallery").as_posix() for p in paths]
    refs = [f"{base_url}/{r}" for r in rel] if base_url else [str(p.resolve()) for p in paths]
    q.upsert("products", points=[models.PointStruct(id=i, vector=v.tolist(), payload={"image_path": ref})
                                 for i, (v, ref) in enumerate(zip(vecs, refs, strict=True))], wait=True)
    q.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="existing_output")
    ap.add_argument("--epochs", type=int, default=20, help="the team's training epochs")
    ap.add_argument("--v2-epochs", type=int, default=10)
    ap.add_argument("--prepare-only", action="store_true",
                    help="Only build the team's side (model, ONNX file, classifier, the 'products' collection with "
                         "local image paths) and stop: the README's existing-collection block runs from there.")
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    test = load_npz(FIXTURE, "test")
    paths = write_image_folder(test, out / "gallery", np.flatnonzero(test.labels < CLASSES))
    onnx_path = team_trains_and_exports(out, args.epochs)
    if args.prepare_only:
        team_indexes(out, onnx_path, None, paths)
        print(f"the team's model {onnx_path} (classifier {out / 'team_classifier.npz'}) and collection 'products' "
              f"({len(paths)} points, one unnamed 48-d vector, payload image_path) in {out / 'qdrant'}")
        return 0
    httpd, base = serve(out / "gallery")
    try:
        team_indexes(out, onnx_path, base, paths)
        print(f"the team's collection 'products': {len(paths)} points, one unnamed 48-d vector, images at {base}/")
        runner = CliRunner()

        def qc(*a: str) -> str:
            res = runner.invoke(cli, ["--path", str(out / "qdrant"), "--registry", str(out / "registry"), "--no-progress", *a])
            if res.exit_code != 0:
                raise SystemExit(f"qdrant-compat {' '.join(a)} failed:\n{res.output}")
            return res.output

        print(qc("model", "import", str(onnx_path), "--name", "team", "--version", "1", "--mean", str(MEAN),
                 "--std", str(STD), "--classifier", str(out / "team_classifier.npz")).strip())
        print(qc("collection", "adopt", "products", "--model", "team@1", "--verify", "50").strip())
        print(qc("train", str(FIXTURE), "--max-classes", str(CLASSES + 40), "--channels", "1", "--size", "28",
                 "--mean", str(MEAN), "--std", str(STD), "--dim", "48", "--epochs", str(args.v2_epochs),
                 "--batch-size", "64", "--lr", "3e-3", "--old-model", "team@1", "--gate-data", str(FIXTURE),
                 "--out", str(out / "ckpt-v2"),
                 "--register", "team@2").strip())
        ev = json.loads(qc("--json", "evaluate", str(FIXTURE), "--split", "test", "--max-classes", str(CLASSES + 40),
                           "--seen-classes-from", "team@1", "--model", "team@1", "--model", "team@2", "--record", "team@2"))
        print(f"evaluate: team@1/team@1 {ev['cells']['team@1/team@1']['top1']:.1f}, team@2/team@1 "
              f"{ev['cells']['team@2/team@1']['top1']:.1f}, team@2/team@2 {ev['cells']['team@2/team@2']['top1']:.1f}")
        # the applications query 'products' by its own name, and Qdrant cannot rename a collection: the plan says
        # so and shows the one-time step (an alias the applications query instead)
        print(qc("upgrade", "plan", "products", "--to", "team@2", "--strategy", "backfill", "--layout", "blue_green").strip())
        print(qc("collection", "alias", "products-live", "products").strip())
        # blue-green: a new collection with named vectors is filled while 'products' serves (on a Qdrant server
        # older than 1.18 the plan picks this layout itself; the embedded store could also upgrade in place)
        print(qc("upgrade", "plan", "products-live", "--to", "team@2", "--strategy", "backfill", "--layout",
                 "blue_green").strip())
        print(qc("upgrade", "run", "products-live", "--to", "team@2", "--strategy", "backfill", "--layout",
                 "blue_green").strip())
        print(qc("upgrade", "cutover", "products-live", "--grace", "0.5").strip())
        hits = json.loads(qc("--json", "search", str(paths[0]), "--collection", "products-live", "--model", "team@2",
                             "-k", "3"))
        print("v2 query through the alias:", [h["payload"]["image_path"].rsplit("/", 2)[-2] for h in hits])
        print(qc("upgrade", "rollback", "products-live").strip())
        print(qc("upgrade", "cutover", "products-live", "--grace", "0.5").strip())
        print(qc("upgrade", "cleanup", "products-live", "--yes", "--backup-dir", str(out / "backups")).strip())
        print(qc("upgrade", "status", "products-live").strip())
    finally:
        httpd.shutdown()
    print(f"\nexisting-collection example finished in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
