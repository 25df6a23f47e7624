"""The streaming trainer: views, sampler, memory independence, same-view old targets, AMP, cache, image lists."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from qdrant_compat.data import ImageList, preprocess
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.models import ModelConfig
from qdrant_compat.runtime.cache import VectorCache
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.training import TrainConfig, prepare_old_targets, train_model
from qdrant_compat.training import trainer as trainer_mod
from qdrant_compat.training.data import AUGMENTS, StepSampler, ViewTransform, sample_seed
from qdrant_compat.training.trainer import _lr_lambda

from ..conftest import SPEC


class CountingSource:
    """Wraps a source; records every read and, per step, how many reads had happened by then."""

    def __init__(self, base):
        self.base, self.labels, self.classes = base, base.labels, base.classes
        self.reads: list[int] = []
        self.lock = threading.Lock()

    def __len__(self):
        return len(self.base)

    def get(self, i):
        with self.lock:
            self.reads.append(int(i))
        return self.base.get(i)


def test_view_none_is_the_serving_tensor_bit_for_bit(omni_train):
    view = ViewTransform(SPEC, AUGMENTS["none"])
    imgs = [omni_train.get(i) for i in range(5)]
    x = torch.stack([view(im, 0) for im in imgs]).float() / 255
    mean, std = torch.tensor(SPEC.mean).view(1, 1, 1, 1), torch.tensor(SPEC.std).view(1, 1, 1, 1)
    assert torch.equal((x - mean) / std, torch.from_numpy(preprocess(imgs, SPEC)))


def test_augmented_views_are_seeded_per_image(omni_train):
    view = ViewTransform(SPEC, AUGMENTS["standard"])
    img = omni_train.get(3)
    a, b, c = view(img, 11), view(img, 11), view(img, 12)
    assert a.dtype == torch.uint8 and a.shape == (1, 28, 28)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sample_seed(0, 1, 5) != sample_seed(0, 2, 5) != sample_seed(1, 1, 5)


def test_sampler_steps_are_the_same_for_any_world_and_resume_point():
    one = StepSampler(100, 32, seed=4)
    perm = one.permutation(2)
    ranks = [StepSampler(100, 32, seed=4, rank=r, world=2, accum=2) for r in range(2)]
    for step in range(one.steps_per_epoch):
        whole = torch.cat(one.step_indices(perm, step))
        parts = torch.cat([torch.cat(s.step_indices(perm, step)) for s in ranks])
        assert torch.equal(whole, parts)  # the step's global batch, split over 2 ranks x 2 micro-batches
    one.set_epoch(2, start_step=2)
    assert [k for mb in one for k, _ in mb] == perm[64:96].tolist()
    with pytest.raises(InvalidArgumentError, match="multiple of processes x accumulation steps"):
        StepSampler(100, 30, seed=0, world=4)


def test_warmup_then_cosine():
    f = _lr_lambda(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_stream_reads_as_it_trains_never_all_up_front(omni_train, monkeypatch):
    src = CountingSource(omni_train)
    monkeypatch.setattr(trainer_mod, "materialize", lambda *a, **k: pytest.fail("the source was materialised"))
    reads_at_step: list[int] = []
    cfg = TrainConfig(epochs=2, batch_size=32, workers=0, seed=0)
    res = train_model(src, ModelConfig(in_channels=1, dim=16), cfg, SPEC,
                      progress=lambda done, total: reads_at_step.append(len(src.reads)))
    spe = len(omni_train) // 32
    assert res.input_mode == "stream" and len(reads_at_step) == 2 * spe
    for k, n in enumerate(reads_at_step):  # by step k, only the images of steps 0..k were ever read
        assert n == (k + 1) * 32, (k, n)
    assert len(src.reads) == 2 * spe * 32  # each image once per epoch, none decoded twice


def test_old_targets_of_an_augmented_batch_are_the_old_model_on_that_very_tensor(trained, omni_train, monkeypatch):
    registry, card = trained[0], trained[1]
    old_reg = registry.get_model(card.ref)
    old = prepare_old_targets(old_reg, omni_train)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = trainer_mod.TrainStep.forward

    def spy(self, x, labels, old_emb, extras):
        seen.append((x.detach().clone(), old_emb.detach().clone(), labels.clone()))
        return real(self, x, labels, old_emb, extras)

    monkeypatch.setattr(trainer_mod.TrainStep, "forward", spy)
    cfg = TrainConfig(epochs=1, batch_size=64, workers=0, augment="light",
                      losses={"norm_softmax": 1.0, "cross_contrastive": 1.0})
    train_model(omni_train, ModelConfig(in_channels=1, dim=32), cfg, SPEC, old=old)
    emb = Embedder(old_reg)
    assert len(seen) == len(omni_train) // 64
    for x, old_emb, _ in seen[:3]:
        ref = emb.embed_tensor(x.numpy())  # the old model run on the exact tensor the new model trained on
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        np.testing.assert_allclose(old_emb.numpy(), ref, atol=1e-5)
    # and not the precomputed targets of the un-augmented images
    x, old_emb, _ = seen[0]
    pre = torch.from_numpy(old.embeddings)
    assert not any(torch.allclose(old_emb[i], pre[j], atol=1e-3) for i in range(4) for j in range(len(pre)))


def test_bf16_autocast_trains_on_cpu_and_fp16_needs_cuda(omni_train):
    cfg = TrainConfig(epochs=1, batch_size=64, workers=0, amp="bf16")
    res = train_model(omni_train, ModelConfig(in_channels=1, dim=16), cfg, SPEC)
    assert np.isfinite(res.history[0]["loss"]) and res.history[0]["loss"] > 0
    with pytest.raises(InvalidArgumentError, match="--amp fp16 needs a CUDA device"):
        train_model(omni_train, ModelConfig(in_channels=1, dim=16), TrainConfig(epochs=1, amp="fp16", device="cpu"), SPEC)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with a grad scaler and channels_last need a CUDA GPU")
def test_fp16_grad_scaler_on_cuda(omni_train):
    cfg = TrainConfig(epochs=1, batch_size=64, workers=2, amp="fp16", device="cuda")
    res = train_model(omni_train, ModelConfig(in_channels=1, dim=16), cfg, SPEC)
    assert np.isfinite(res.history[0]["loss"])


def test_accumulation_and_warmup_run(omni_train):
    cfg = TrainConfig(epochs=1, batch_size=64, accum_steps=2, warmup_steps=3, workers=1)
    res = train_model(omni_train, ModelConfig(in_channels=1, dim=16), cfg, SPEC)
    assert res.history[0]["images_per_s"] > 0 and np.isfinite(res.history[0]["loss"])


def test_old_targets_and_frozen_features_come_from_the_cache_the_second_time(trained, omni_train, tmp_path):
    registry, card = trained[0], trained[1]
    cache = VectorCache(tmp_path / "cache")
    a = prepare_old_targets(registry.get_model(card.ref), omni_train, cache=cache)
    assert cache.misses == len(omni_train) and cache.hits == 0
    b = prepare_old_targets(registry.get_model(card.ref), omni_train, cache=cache)
    assert cache.hits == len(omni_train)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    # another subset of the same images hits too; a changed image misses
    sub = omni_train.subset(np.arange(10))
    Embedder(registry.get_model(card.ref)).embed_source(sub, cache=cache)
    assert cache.hits == len(omni_train) + 10
    x = omni_train.x[:10].copy()
    x[0] = 255 - x[0]
    from qdrant_compat.data import ArrayImages

    changed = ArrayImages(x, omni_train.labels[:10], omni_train.classes)
    misses = cache.misses
    Embedder(registry.get_model(card.ref)).embed_source(changed, cache=cache)
    assert cache.misses == misses + 1
    # frozen backbone features: computed once, then read
    cfg = TrainConfig(epochs=1, batch_size=64, workers=0)
    mc = ModelConfig(in_channels=1, dim=16, freeze_backbone=True)
    r1 = train_model(omni_train, mc, cfg, SPEC, cache=cache)
    hits = cache.hits
    r2 = train_model(omni_train, mc, cfg, SPEC, cache=cache)
    assert r1.input_mode == "features" and cache.hits == hits + len(omni_train)
    for k, v in r1.model.state_dict().items():
        assert torch.equal(v, r2.model.state_dict()[k]), k


def test_cache_size_cap_drops_least_recently_used(tmp_path):
    cache = VectorCache(tmp_path, max_bytes=2000)  # one model key is ~1.4 kB here
    keys = [bytes([i]) for i in range(4)]
    cache.get("model-a", keys, lambda m: np.ones((len(m), 64)))
    cache.get("model-b", keys, lambda m: np.ones((len(m), 64)))  # over the cap: model-a goes
    assert not (tmp_path / "model-a").exists() and (tmp_path / "model-b").exists()


@pytest.fixture()
def image_server(tmp_path, omni_train):
    from qdrant_compat.data import write_image_folder

    paths = write_image_folder(omni_train, tmp_path / "imgs", range(0, len(omni_train), 3))

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128

    httpd = Server(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path / "imgs")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, paths, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_image_list_with_urls_a_404_and_a_poison_image(image_server):
    tmp, paths, base = image_server
    poison = tmp / "imgs" / "poison.png"
    poison.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 50)
    rows = ["image,label"]
    for k, p in enumerate(paths):
        rel = p.relative_to(tmp / "imgs")
        rows.append(f"{base}/{rel},{p.parent.name}" if k % 2 else f"imgs/{rel},{p.parent.name}")  # URLs and relative paths
    rows += [f"{base}/gone/404.png,{paths[0].parent.name}", f"{poison},{paths[1].parent.name}"]
    (tmp / "train.csv").write_text("\n".join(rows) + "\n")
    src = ImageList(tmp / "train.csv")
    assert len(src) == len(paths) + 2 and len(src.classes) == len({p.parent.name for p in paths})
    cfg = TrainConfig(epochs=2, batch_size=len(src) // 2, workers=2)
    res = train_model(src, ModelConfig(in_channels=1, dim=16), cfg, SPEC)
    assert set(res.skipped) == {len(paths), len(paths) + 1}
    assert "not found (HTTP 404)" in res.skipped[len(paths)]
    assert "cannot be read as an image" in res.skipped[len(paths) + 1]
    assert np.isfinite(res.history[-1]["loss"])


def test_image_list_formats(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "l.jsonl").write_text('{"path": "x.png", "class": "cat"}\n\n{"path": "/abs/y.png", "class": "dog"}\n')
    (tmp_path / "l.txt").write_text("# comment\na/1.png\nhttps://h/b/2.png bird\n")
    j = ImageList(tmp_path / "l.jsonl")
    assert j.refs == [str(tmp_path / "x.png"), "/abs/y.png"] and j.classes == ["cat", "dog"]
    t = ImageList(tmp_path / "l.txt")
    assert t.refs == [str(tmp_path / "a/1.png"), "https://h/b/2.png"] and t.classes == ["a", "bird"]
    (tmp_path / "bad.csv").write_text("file_name,label\nx.png,a\n")
    with pytest.raises(InvalidArgumentError, match=r"no image column; expected one of \['image', 'path'"):
        ImageList(tmp_path / "bad.csv")
