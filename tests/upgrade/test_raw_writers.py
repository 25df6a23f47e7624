"""A raw qdrant-client writer (not through CompatClient) during the fill, the cutover and the cleanup of an in-place
upgrade: each write lands at the worst moment of its step, and the end state is checked point by point (#20).

Such a writer knows nothing of the upgrade: it writes only the old model's vector, and its upsert of an existing
point replaces all that point's vectors. The tool cannot stop it; it must notice every such point and fill it.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models as qm

from qdrant_compat.enums import Phase
from qdrant_compat.errors import UpgradeError
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.store import Store
from qdrant_compat.upgrade import cleanup, cutover, inplace, run_upgrade, upgrade_status


class RawWriter:
    """Upserts ``(id, image)`` points with only the old model's vector, as a service that predates the upgrade."""

    def __init__(self, client, images):
        self.q, self.images = client.qdrant, images
        self.emb = Embedder(client.registry.get_model("omni@1"))
        self.written: dict[int | str, str] = {}

    def write(self, pid, k: int) -> None:
        img = self.images[k % len(self.images)]
        v = self.emb.embed([img])[0]
        self.q.upsert("g", points=[qm.PointStruct(id=pid, vector={"omni@1": v.tolist()}, payload={"image_path": img})],
                      wait=True)
        self.written[pid] = img


def _check_every_point(client, writer: RawWriter) -> None:
    """Every point holds the new model's vector of its own image; the raw writer's points included."""
    recs = list(client.scroll_all("g", with_vectors=["omni-indep@2"]))
    assert all("omni-indep@2" in (r.vector or {}) for r in recs), [r.id for r in recs if "omni-indep@2" not in (r.vector or {})]
    by_id = {r.id: r for r in recs}
    assert set(writer.written) <= set(by_id)
    ids = list(writer.written)
    want = Embedder(client.registry.get_model("omni-indep@2")).embed([writer.written[i] for i in ids])
    for i, w in zip(ids, want, strict=True):
        got = np.asarray(by_id[i].vector["omni-indep@2"])
        assert by_id[i].payload["image_path"] == writer.written[i]
        assert np.allclose(got / np.linalg.norm(got), w / np.linalg.norm(w), atol=1e-5), i


def test_raw_writes_during_fill_cutover_and_cleanup_are_noticed_and_filled(world, monkeypatch):
    tmp, client = world
    images = [str(p.resolve()) for p in sorted((tmp / "gallery").rglob("*.png"))]
    existing = [r.id for r in client.scroll_all("g")]
    raw = RawWriter(client, images)

    # 1. during the fill: after the backfill's first batch, a new point and a rewrite of one already re-extracted
    real_write = Store.write_vectors
    calls = [0]

    def write_then_raw(self, *a, **kw):
        real_write(self, *a, **kw)
        calls[0] += 1
        if calls[0] == 1:
            raw.write(900_001, 1)
            raw.write(existing[0], 2)  # replaces the point: its new vector and its mark are gone

    monkeypatch.setattr(Store, "write_vectors", write_then_raw)
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="backfill", batch_size=32)
    monkeypatch.setattr(Store, "write_vectors", real_write)
    assert rep.job.phase != Phase.FILLED and rep.remaining >= 1  # the run says it is not done
    with pytest.raises(UpgradeError, match="have no 'omni-indep@2' vector yet"):
        cutover(client, "g", grace=0)
    rep = run_upgrade(client, "g")
    assert rep.job.phase == Phase.FILLED and rep.remaining == 0

    # 2. during the cutover's grace period: the final check refuses, nothing is switched
    real_sleep = inplace.time.sleep
    monkeypatch.setattr(inplace.time, "sleep", lambda s: raw.write(900_002, 3))
    with pytest.raises(UpgradeError, match="1 of 152 points have no 'omni-indep@2' vector"):
        cutover(client, "g", grace=1)
    monkeypatch.setattr(inplace.time, "sleep", real_sleep)
    assert client.get_meta("g").read == "omni@1" and client.get_meta("g").job.phase == Phase.FILLED
    run_upgrade(client, "g")
    cutover(client, "g", grace=0)

    # 3. after the cutover: status counts the point, cleanup refuses, a plain run fills it
    raw.write(900_003, 4)
    assert upgrade_status(client, "g").lacking_target == 1
    with pytest.raises(UpgradeError, match="cleanup refused: 1 point"):
        cleanup(client, "g", yes=True, backup_dir=tmp / "bk")
    assert run_upgrade(client, "g").processed == 1

    # 4. between cleanup's count and its drop: the point ends with no vector; cleanup says so and a run fills it
    real_backup = Store.backup

    def backup_then_raw(self, *a, **kw):
        out = real_backup(self, *a, **kw)
        raw.write(900_004, 5)
        return out

    monkeypatch.setattr(Store, "backup", backup_then_raw)
    done = cleanup(client, "g", yes=True, backup_dir=tmp / "bk")
    monkeypatch.setattr(Store, "backup", real_backup)
    assert done.left_without_vector == 1 and client.get_meta("g").job.phase == Phase.CLEANED
    assert run_upgrade(client, "g").processed == 1

    _check_every_point(client, raw)
    assert client.store.count("g") == 150 + 4  # the four new points, nothing lost, nothing duplicated
