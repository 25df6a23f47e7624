"""The local engine and the one decode step both engines share: statuses, order, bounded read-ahead, early stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qdrant_compat.data import write_image_folder
from qdrant_compat.data.images import ImageRefs, LocalImages
from qdrant_compat.engines import base, local, make_engine
from qdrant_compat.engines.local import LocalEngine
from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.runtime.embedder import Embedder


@pytest.fixture()
def images(tmp_path, omni_test):
    write_image_folder(omni_test, tmp_path / "imgs", np.arange(23))
    return sorted(str(p) for p in (tmp_path / "imgs").rglob("*.png"))


def _extract(engine, refs, trained, **kw):
    registry, card = trained[0], trained[1]
    return list(engine.extract(refs, registry_root=str(registry.root), model=card.ref, batch_size=5,
                               reader=kw.pop("reader", LocalImages()), **kw))


def test_decode_names_what_became_of_each_image(tmp_path, trained):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    ok = tmp_path / "ok.png"
    from PIL import Image

    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(ok)
    refs = ["http://alice:pw@127.0.0.1:9/x.png", str(bad), str(tmp_path / "gone.png"), "", str(ok)]
    dec = base.decode(refs, trained[1].input, ImageRefs(timeout=0.3, retries=0))
    assert dec.status == ["unreachable", "failed", "missing", "missing", "ok"]
    assert [bool(e) for e in dec.error] == [True, True, True, True, False]
    assert "pw@" not in dec.error[0] and "gone.png" in dec.error[2]
    assert not dec.x[:4].any() and dec.x[4].any()  # zeros where not ok, the preprocessed image where ok
    assert dec.x.shape == (5, 1, 28, 28)


def test_extract_equals_the_embedder_in_order_with_and_without_threads(images, trained):
    want = Embedder(trained[0].get_model(trained[1].ref)).embed(images)
    for workers in (0, 1, 3):
        out = _extract(LocalEngine(read_workers=workers), images, trained)
        assert [len(o["i"]) for o in out] == [5, 5, 5, 5, 3]
        assert np.concatenate([o["i"] for o in out]).tolist() == list(range(len(images)))
        assert all((o["status"] == "ok").all() for o in out)
        np.testing.assert_allclose(np.concatenate([o["vec"] for o in out]), want, atol=1e-5)
        assert all(float(o["read_s"]) > 0 and float(o["embed_s"]) > 0 for o in out)


def test_a_bad_image_is_a_status_not_an_error(images, trained, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    refs = [*images[:3], str(tmp_path / "bad.png"), str(tmp_path / "gone.png"), images[3]]
    out = _extract(LocalEngine(read_workers=2), refs, trained)
    status = np.concatenate([o["status"] for o in out]).tolist()
    assert status == ["ok", "ok", "ok", "failed", "missing", "ok"]
    vec = np.concatenate([o["vec"] for o in out])
    assert not vec[3:5].any() and np.isfinite(vec).all() and vec[5].any()


def test_read_ahead_is_bounded_and_closing_stops_the_threads(images, trained, monkeypatch):
    calls, lock = [], threading.Lock()
    real = local.decode

    def counting(refs, spec, reader):
        with lock:
            calls.append(refs[0])
        return real(refs, spec, reader)

    monkeypatch.setattr(local, "decode", counting)
    engine = LocalEngine(read_workers=2)
    gen = engine.extract(images * 4, registry_root=str(trained[0].root), model=trained[1].ref, batch_size=2,
                         reader=LocalImages())
    first = next(gen)
    assert first["i"].tolist() == [0, 1]
    threading.Event().wait(0.5)  # let the threads run ahead as far as they may
    # one batch taken, two embedded and waiting, one being embedded, read_workers + 1 being read
    assert len(calls) <= 1 + 2 + 1 + 3, len(calls)
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("qdrant-compat-embed") and t.is_alive()]
    assert len(calls) < len(images * 4) // 2  # it stopped, it did not read everything


def test_an_error_in_the_read_threads_is_raised_in_the_caller(images, trained, monkeypatch):
    def broken(refs, spec, reader):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(local, "decode", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _extract(LocalEngine(read_workers=2), images, trained)
    assert not [t for t in threading.enumerate() if t.name.startswith("qdrant-compat-embed") and t.is_alive()]


def test_the_local_engine_never_writes_and_says_so(trained):
    eng = make_engine("local", read_workers=1)
    assert isinstance(eng, LocalEngine) and eng.read_workers == 1
    assert eng.worker_writes(None, None, "me", 1.0) is None
    with pytest.raises(InvalidArgumentError, match="do not write"):
        list(eng.extract(["x"], registry_root=str(trained[0].root), model=trained[1].ref, batch_size=1,
                         reader=LocalImages(), write=object()))
    with pytest.raises(InvalidArgumentError, match="read_workers must be >= 0"):
        LocalEngine(read_workers=-1)
    with pytest.raises(InvalidArgumentError, match="unknown; allowed"):
        make_engine("spark")


def test_finite_rows():
    v = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 0.0], [np.inf, 0.0]], np.float32)
    assert base.finite_rows(v).tolist() == [True, False, False, False]
    assert base.finite_rows(np.zeros((0, 2), np.float32)).tolist() == []
