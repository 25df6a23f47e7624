"""Images behind HTTP (a local server on 127.0.0.1): reads, 404s, slow answers, retries, and a backfill."""

from __future__ import annotations

import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from qdrant_compat.data import ImageRefs
from qdrant_compat.data.images import ImageMissingError
from qdrant_compat.errors import CorruptArtifactError
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.upgrade import run_upgrade


@pytest.fixture()
def server(world):
    """Serves the world's gallery; /slow/... answers after 2 s, /flaky/... fails twice with 503 first."""
    tmp, client = world
    calls: dict[str, int] = {}

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            calls[self.path] = calls.get(self.path, 0) + 1
            if calls.get("DOWN"):  # the whole server is failing
                self.send_error(503, "down")
                return
            if self.path.startswith("/drip/"):  # answers, then sends a byte every 0.2 s
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.2)
                return
            if self.path.startswith("/slow/"):
                time.sleep(2.0)
                self.path = self.path[5:]
            elif self.path.startswith("/flaky/"):
                if calls[self.path] <= 2:
                    self.send_error(503, "busy")
                    return
                self.path = self.path[6:]
            return super().do_GET()

    class Server(ThreadingHTTPServer):
        # the reader opens many connections at once; the default listen backlog (5) drops some SYNs, and a
        # dropped SYN is retried by the kernel after 1 s: longer than the tests' timeouts (a server's fault,
        # not the reader's; real image servers listen with large backlogs)
        request_queue_size = 128

    httpd = Server(("127.0.0.1", 0), partial(Handler, directory=str(tmp / "gallery")))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield tmp, client, base, calls
    httpd.shutdown()


def _rel(tmp, p):
    return str(p.relative_to(tmp / "gallery"))


def test_http_reads_404_slow_and_retries(server):
    tmp, client, base, calls = server
    p = sorted((tmp / "gallery").rglob("*.png"))[0]
    refs = ImageRefs(timeout=0.5, retries=1, backoff=0.05)
    img = refs.read(f"{base}/{_rel(tmp, p)}")
    assert np.array_equal(np.asarray(img), np.asarray(refs.read(str(p))))  # the same image as the local file
    with pytest.raises(ImageMissingError, match="not found \\(HTTP 404\\)"):
        refs.read(f"{base}/nope.png")
    assert calls["/nope.png"] == 1  # a 404 is never retried
    t0 = time.perf_counter()
    with pytest.raises(CorruptArtifactError, match="could not be read after 2 attempt"):
        refs.read(f"{base}/slow/{_rel(tmp, p)}")
    assert time.perf_counter() - t0 < 2.5  # bounded: timeout x attempts + back-off, never forever
    retrying = ImageRefs(timeout=0.5, retries=2, backoff=0.05)
    assert retrying.read(f"{base}/flaky/{_rel(tmp, p)}").size == img.size  # two 503s, then it answers
    with pytest.raises(CorruptArtifactError, match="larger than 10 bytes"):
        ImageRefs(max_bytes=10).read(f"{base}/{_rel(tmp, p)}")


def test_object_store_schemes_without_their_driver_are_one_clear_error():
    # without fsspec: which package to install; with fsspec but no s3fs: the driver's own complaint, one line
    with pytest.raises(CorruptArtifactError, match=r"s3://bucket/a.png (: reading s3:// needs fsspec|could not be read)"):
        ImageRefs().read("s3://bucket/a.png")


def test_backfill_reads_images_over_http(server):
    tmp, client, base, calls = server
    paths = sorted((tmp / "gallery").rglob("*.png"))[:40]
    urls = [f"{base}/{_rel(tmp, p)}" for p in paths]
    urls[3] = f"{base}/gone.png"
    urls[7] = f"{base}/slow/{_rel(tmp, paths[7])}"
    vecs = Embedder(client.registry.get_model("omni@1")).embed([str(p) for p in paths])
    client.create_collection("web", "omni@1")
    client.upsert("web", "omni@1", vecs, ids=list(range(40)), payloads=[{"image_path": u} for u in urls])
    rep = run_upgrade(client, "web", "omni-indep@2", strategy="backfill", batch_size=16,
                      images=ImageRefs(timeout=0.5, retries=1, backoff=0.05))
    assert rep.job.counts["extracted"] == 38 and rep.job.counts["missing"] == 1 and rep.job.counts["unreachable"] == 1
    assert any("gone.png" in e and "not found" in e for e in rep.job.errors)
    unread = [e for e in rep.job.errors if "could not be read" in e]
    assert len(unread) == 1 and "/slow/" in unread[0]  # the one failure is the answer that never came in time
    fresh = Embedder(client.registry.get_model("omni-indep@2")).embed([str(paths[0])])[0]
    got = np.asarray(client.store.retrieve("web", [0], with_vectors=True)[0].vector["omni-indep@2"])
    assert np.allclose(got / np.linalg.norm(got), fresh / np.linalg.norm(fresh), atol=1e-5)


def test_plan_counts_missing_remote_images_and_estimates_from_readable_ones(server):
    """A 404 and a dead port are missing before the run, not "missing images: 0" (remote refs used to count as
    present); and the time estimate comes from the images that can be read, not from a dead host's retries."""
    from qdrant_compat.upgrade import plan_upgrade

    tmp, client, base, _ = server
    paths = sorted((tmp / "gallery").rglob("*.png"))[:20]
    urls = [f"{base}/{_rel(tmp, p)}" for p in paths]
    urls[2], urls[5] = f"{base}/gone.png", f"{base}/also-gone.png"
    urls[8], urls[11] = "http://127.0.0.1:9/x.png", "http://127.0.0.1:9/y.png"  # nothing listens on port 9
    vecs = Embedder(client.registry.get_model("omni@1")).embed([str(p) for p in paths])
    client.create_collection("web2", "omni@1")
    client.upsert("web2", "omni@1", vecs, ids=list(range(20)), payloads=[{"image_path": u} for u in urls])
    plan = plan_upgrade(client, "web2", "omni-indep@2", strategy="backfill",
                        images=ImageRefs(timeout=0.5, retries=3, backoff=0.5))
    assert plan.images_missing == 4 and plan.images_checked == 20
    assert any("4 point(s) have no readable image" in r and "asked of their server" in r for r in plan.reasons)
    assert plan.seconds_per_point < 0.2  # the dead-port reads (4 attempts, 3.5 s of back-off each) are not timed
    refs = ImageRefs()
    assert refs.probe(urls[0]) and not refs.probe(urls[2]) and not refs.probe(urls[8]) and refs.probe(str(paths[0]))


def test_a_run_stops_when_the_image_server_goes_down_and_a_rerun_retries(server):
    """The server fails every request from the third batch on: the run stops after a few such batches with one
    clear error (not thousands of points marked failed and exit 0); once it answers again a plain rerun (no
    --retry-missing) fetches the points that failed."""
    from qdrant_compat.errors import UpgradeError
    from qdrant_compat.upgrade import upgrade_status

    tmp, client, base, calls = server
    paths = sorted((tmp / "gallery").rglob("*.png"))[:80]
    vecs = Embedder(client.registry.get_model("omni@1")).embed([str(p) for p in paths])
    client.create_collection("down", "omni@1")
    client.upsert("down", "omni@1", vecs, ids=list(range(80)),
                  payloads=[{"image_path": f"{base}/{_rel(tmp, p)}"} for p in paths])
    refs = ImageRefs(timeout=0.5, retries=1, backoff=0.01)
    run_upgrade(client, "down", "omni-indep@2", strategy="backfill", batch_size=8, max_batches=2, images=refs,
                read_workers=0)
    calls["DOWN"] = 1
    with pytest.raises(UpgradeError, match="the images stopped answering.*run 'upgrade run' again"):
        run_upgrade(client, "down", batch_size=8, images=refs, read_workers=0)
    st = upgrade_status(client, "down").vectors["omni-indep@2"]
    assert st.extracted == 16 and st.unreachable == 16 and st.failed == 0  # two batches marked, then it stopped
    calls["DOWN"] = 0
    rep = run_upgrade(client, "down", batch_size=8, images=refs, read_workers=0)
    assert rep.remaining == 0
    st = upgrade_status(client, "down").vectors["omni-indep@2"]
    assert st.extracted == 80 and st.unreachable == 0


@pytest.mark.parametrize("ref", ["http://127.0.0.1:1/a b.png", "http://127.0.0.1:1/ünïcode.png", "http://[::1:80/x.png"])
def test_a_malformed_url_fails_its_point_with_the_reason(ref):
    with pytest.raises(CorruptArtifactError, match="is not a valid URL"):
        ImageRefs(timeout=0.5, retries=0).read(ref)


def test_a_body_that_drips_is_cut_at_the_deadline(server):
    tmp, client, base, calls = server
    refs = ImageRefs(timeout=1.0, retries=0, deadline=1.5)
    t0 = time.perf_counter()
    with pytest.raises(CorruptArtifactError, match="no complete answer within 1.5 s"):
        refs.read(f"{base}/drip/x.png")
    assert time.perf_counter() - t0 < 4  # the socket timeout alone never fires: a byte arrives every 0.2 s


def test_errors_carry_no_password_and_no_file_content(tmp_path):
    with pytest.raises(CorruptArtifactError) as info:
        ImageRefs(timeout=0.3, retries=0).read("http://alice:s3cret@127.0.0.1:9/x.png")
    assert "s3cret" not in str(info.value) and "***@127.0.0.1:9" in str(info.value)
    f = tmp_path / "notes.ppm"
    f.write_bytes(b"P6\n# private: hunter2 and more text here\n")
    with pytest.raises(CorruptArtifactError) as info:
        ImageRefs().read(str(f))
    assert "hunter2" not in str(info.value) and "private" not in str(info.value)
