"""Faults and bad input on the upgrade path: each case failed (or crashed) before its fix."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from qdrant_compat.bridges import fit_and_register
from qdrant_compat.client import PROVENANCE_KEY
from qdrant_compat.enums import Mark, Phase
from qdrant_compat.errors import CorruptArtifactError, FingerprintMismatchError, InvalidArgumentError, UpgradeError
from qdrant_compat.metadata import META_KEY
from qdrant_compat.upgrade import cleanup, cutover, plan_upgrade, rollback, run_upgrade, upgrade_status
from qdrant_compat.upgrade.state import provenance_key


def _converter(client, omni_train):
    return fit_and_register(client.registry, "omni@1", "omni-indep@2", "linear", images=omni_train, conv_id="lin12")


def _png_bomb(path, side: int = 200_000) -> None:
    """A tiny PNG whose header claims side x side pixels: Pillow refuses it as a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_cleanup_backup_stays_recorded_after_many_errors(world, omni_train):
    """The backup used to be written into job.errors, capped at 20: after 25 missing images it was lost."""
    tmp, client = world
    _converter(client, omni_train)
    for p in sorted((tmp / "gallery").rglob("*.png"))[:25]:
        p.unlink()
    rep = run_upgrade(client, "g", "omni-indep@2", strategy="convert+backfill")
    assert rep.job.counts["missing"] == 25 and len(rep.job.errors) == 20
    cutover(client, "g", allow_partial=True)
    out = cleanup(client, "g", yes=True, backup_dir=tmp / "bk")
    job = client.get_meta("g").job
    assert job.phase == Phase.CLEANED and job.cleanup is not None and job.cleanup.backup == out.backup
    assert job.cleanup.dropped
    with pytest.raises(UpgradeError, match=f"cleanup record \\(backup: {out.backup}\\)"):
        rollback(client, "g")
    # the backup file brings the dropped vector back, point for point
    n = client.store.restore(out.backup, "g-restored")
    assert n == 150
    old = {r.id: r.vector["omni@1"] for r in client.store.scroll_all("g-restored", with_vectors=["omni@1"])}
    assert len(old) == 150 and all(len(v) == 32 for v in old.values())


def test_interrupted_cleanup_resumes_the_drop_without_a_second_backup(world, omni_train, monkeypatch):
    tmp, client = world
    _converter(client, omni_train)
    run_upgrade(client, "g", "omni-indep@2", strategy="convert")
    cutover(client, "g")

    def die(*a, **k):
        raise RuntimeError("killed while dropping")

    monkeypatch.setattr(client.store, "drop_vector", die)
    with pytest.raises(RuntimeError):
        cleanup(client, "g", yes=True, backup_dir=tmp / "bk")
    first = client.get_meta("g").job.cleanup
    assert first is not None and not first.dropped  # journal: the backup was recorded before the drop
    monkeypatch.undo()
    out = cleanup(client, "g", yes=True, backup_dir=tmp / "bk")
    assert out.resumed and out.backup == first.backup
    assert len(list((tmp / "bk").iterdir())) == 1  # never a second backup of a half-dropped collection
    assert "omni@1" not in client.store.vector_params("g")
    again = cleanup(client, "g", yes=True)
    assert again.resumed and again.backup == first.backup


def test_convert_refuses_vectors_recorded_with_another_fingerprint(world, omni_train):
    tmp, client = world
    _converter(client, omni_train)
    meta = client.get_meta("g")
    meta.vectors["omni@1"].fingerprint = "0" * 64  # the stored vectors are not the registry's omni@1
    client.put_meta("g", meta)
    with pytest.raises(FingerprintMismatchError, match="the stored vectors are not that model's"):
        plan_upgrade(client, "g", "omni-indep@2", strategy="convert")
    with pytest.raises(FingerprintMismatchError):
        run_upgrade(client, "g", "omni-indep@2", strategy="convert")
    assert "omni-indep@2" not in client.store.vector_params("g")


def test_poison_images_fail_their_point_not_the_job(world):
    tmp, client = world
    paths = sorted((tmp / "gallery").rglob("*.png"))
    _png_bomb(paths[0])
    paths[1].write_bytes(b"")  # a 0-byte file
    plan = plan_upgrade(client, "g", "omni-indep@2")  # the plan samples the first images: no crash
    assert plan.seconds_per_point > 0
    rep = run_upgrade(client, "g", "omni-indep@2", batch_size=64)
    assert rep.job.counts["failed"] == 2 and rep.job.counts["extracted"] == 148
    assert any("DecompressionBomb" in e for e in rep.job.errors)
    st = upgrade_status(client, "g").vectors["omni-indep@2"]
    assert st.failed == 2 and st.extracted == 148
    marks = {r.payload["image_path"]: r.payload[PROVENANCE_KEY][provenance_key("omni-indep@2")]
             for r in client.scroll_all("g")}
    assert marks[str(paths[0].resolve())] == Mark.FAILED and marks[str(paths[1].resolve())] == Mark.FAILED
    assert run_upgrade(client, "g", batch_size=64).processed == 0  # resume does not crash on them again


def test_huge_vectors_are_refused_not_stored_as_zeros(client, random_vectors):
    client.create_collection("h", "omni@1")
    v = random_vectors(2, 32)
    v[1] *= 1e30
    with pytest.raises(InvalidArgumentError, match=r"1 vector\(s\) have components beyond"):
        client.upsert("h", "omni@1", v)
    assert client.store.count("h") == 0


@pytest.mark.parametrize("block, message", [
    ({"schema": 1, "read": "nope", "write": [], "vectors": {}, "edges": [], "job": None}, None),
    ({"schema": 1, "read": "a", "write": ["b"], "edges": [], "job": None,
      "vectors": {"a": {"model": "m@1", "fingerprint": "f", "dim": 4}}}, "write names vector"),
    ({"schema": 1, "read": "", "write": [], "vectors": ["a"], "edges": [], "job": None}, "expected an object"),
    ({"schema": 1, "read": "a", "write": ["a"], "edges": [], "job": None,
      "vectors": {"a": {"model": "m@1", "fingerprint": "f", "dim": "4"}}}, "expected int"),
    ({"schema": 1, "read": "a", "write": ["a"], "edges": [], "job": None,
      "vectors": {"a": {"model": "m@1", "fingerprint": "f", "dim": 4, "state": "sleeping"}}}, r"'sleeping' is not one of \['active'"),
])
def test_malformed_metadata_is_one_clear_error(client, block, message):
    client.store.create("m", {"a": (4, "Cosine")}, metadata={META_KEY: block})
    if message is None:  # an empty description with a read vector is tolerated (nothing to check)
        client.get_meta("m")
        return
    with pytest.raises((CorruptArtifactError, InvalidArgumentError), match=message):
        client.get_meta("m")


def test_job_phase_is_typed_and_unknown_values_are_refused():
    from qdrant_compat.metadata import JobState

    job = JobState(id="j", source="a", source_model="m@1", target="b", target_model="m@2", target_fingerprint="f",
                   strategy="convert")
    assert job.phase is Phase.PLANNED and job.strategy.converts and not job.strategy.extracts
    assert JobState.from_dict(job.to_dict()) == job
    with pytest.raises(CorruptArtifactError, match=r"job.phase: 'paused' is not one of \['planned'"):
        JobState.from_dict({**job.to_dict(), "phase": "paused"})
    with pytest.raises(UpgradeError, match=r"phase 'paused' unknown; allowed: \['planned'"):
        JobState(**{**job.to_dict(), "phase": "paused", "lock": None, "cleanup": None})


def test_store_capabilities_and_backup_use_public_options_only(client, tmp_path):
    caps = client.store.capabilities()
    assert caps.embedded and caps.named_vector_changes and not caps.snapshots
    assert client.store.local_path == ":memory:"
    client.store.create("s", {"v": (3, "Cosine")})
    client.store.upsert("s", [1, 2], [{"v": [1.0, 0.0, 0.0]}, {"v": [0.0, 1.0, 0.0]}], [{"k": 1}, {"k": 2}])
    with pytest.raises(InvalidArgumentError, match="exists; restore into a new name"):
        client.store.restore(client.store.backup("s", folder=tmp_path), "s")
    assert np.isclose(client.store.search("s", [1.0, 0.0, 0.0], using="v", limit=1)[0].score, 1.0)


def test_a_model_emitting_nan_for_some_images_fails_those_points_only(world):
    """A registered model that divides by the image's contrast: fine on the registration probe, NaN on a
    flat image. Backfill marks that point failed with the reason and fills the rest."""
    import torch

    from qdrant_compat import ModelCard
    from qdrant_compat.export import export_module

    tmp, client = world

    class Fragile(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(28 * 28, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            contrast = x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)
            return self.lin(((x - x.mean()) / contrast).flatten(1))

    export_module(Fragile(), (1, 1, 28, 28), tmp / "fragile.onnx")
    spec = client.registry.get_model("omni@1").card.input
    client.registry.register_model(tmp / "fragile.onnx", ModelCard(name="fragile", version="1", dim=32, input=spec))
    flat = sorted((tmp / "gallery").rglob("*.png"))[5]
    from PIL import Image

    Image.new("L", (28, 28), 255).save(flat)
    rep = run_upgrade(client, "g", "fragile@1", strategy="backfill", batch_size=64)
    assert rep.job.counts["failed"] == 1 and rep.job.counts["extracted"] == 149
    assert any("produced a non-finite or zero vector" in e for e in rep.job.errors)
    rec = next(r for r in client.scroll_all("g", with_vectors=["fragile@1"]) if r.payload["image_path"] == str(flat.resolve()))
    assert "fragile@1" not in (rec.vector or {}) and rec.payload[PROVENANCE_KEY][provenance_key("fragile@1")] == "failed"


def test_cli_cleanup_backup_restores_the_dropped_vector_exactly(make_world, other_model, omni_train):
    """The CLI used to close the embedded store and copy its folder while reopening it; the backup is now
    written through the public API with the store open, and restores every dropped vector (to float32 rounding of a re-normalisation)."""
    import json

    from qdrant_compat import CompatClient, Registry

    tmp, run = make_world(4)
    run("collection", "create", "g", "--model", "omni@1")
    run("index", str(tmp / "gallery"), "--collection", "g", "--model", "omni@1")
    fit_and_register(Registry(tmp / "reg"), "omni@1", "omni-indep@2", "linear", images=omni_train, conv_id="c")
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    before = {r.id: r.vector["omni@1"] for r in c.scroll_all("g", with_vectors=["omni@1"])}
    c.close()
    run("upgrade", "run", "g", "--to", "omni-indep@2", "--strategy", "convert")
    run("upgrade", "cutover", "g", "--grace", "0")
    out = json.loads(run("--json", "upgrade", "cleanup", "g", "--yes").output)
    assert out["backup"].startswith(str(tmp / "store") + ".backups/")
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    assert "omni@1" not in c.store.vector_params("g")
    assert c.store.restore(out["backup"], "g-restored") == len(before)
    after = {r.id: r.vector["omni@1"] for r in c.scroll_all("g-restored", with_vectors=["omni@1"])}
    c.close()
    assert after.keys() == before.keys() and all(np.allclose(after[i], before[i], atol=1e-6) for i in before)


def test_a_cleanup_killed_after_its_backup_and_before_recording_it_makes_no_second_backup(world, tmp_path, monkeypatch):
    """S5 found it: the backup file was complete but the journal did not name it yet, so the rerun made a second
    one. The file is named in the journal first now, and the rerun finds it."""
    from qdrant_compat.store import Store

    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    cutover(client, "g", grace=0.1)
    real = Store.backup

    def backup_then_die(self, *a, **kw):
        real(self, *a, **kw)
        raise KeyboardInterrupt  # the process dies before the journal records the backup as made

    monkeypatch.setattr(Store, "backup", backup_then_die)
    with pytest.raises(KeyboardInterrupt):
        cleanup(client, "g", yes=True, backup_dir=tmp_path / "bk")
    job = client.get_meta("g").job
    assert job.cleanup is not None and not job.cleanup.made and "omni@1" in client.store.vector_params("g")
    monkeypatch.setattr(Store, "backup", real)
    out = cleanup(client, "g", yes=True, backup_dir=tmp_path / "bk")
    files = sorted((tmp_path / "bk").iterdir())
    assert [f.name for f in files] == [Path(out.backup).name]  # one backup, the journaled one
    assert client.get_meta("g").job.phase == Phase.CLEANED
    assert client.store.restore(out.backup, "g-restored") == 150


def test_a_cleanup_killed_before_its_backup_leaves_rollback_possible(world, tmp_path, monkeypatch):
    from qdrant_compat.store import Store

    tmp, client = world
    run_upgrade(client, "g", "omni-indep@2", strategy="backfill")
    cutover(client, "g", grace=0.1)

    def die(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "backup", die)
    with pytest.raises(KeyboardInterrupt):
        cleanup(client, "g", yes=True, backup_dir=tmp_path / "bk")
    monkeypatch.undo()
    rollback(client, "g", grace=0.1)  # nothing was dropped: the planned backup does not block it
    meta = client.get_meta("g")
    assert meta.read == "omni@1" and meta.job.phase == Phase.ROLLED_BACK and meta.job.cleanup is None


@pytest.mark.parametrize("dies", ["after", "before"])
def test_a_blue_green_cleanup_killed_around_its_backup_makes_one_backup_and_loses_nothing(legacy, tmp_path, dies,
                                                                                          monkeypatch):
    """Blue-green cleanup had the window in-place cleanup had: the old collection's backup complete but not yet
    journaled (a rerun made a second one). Killed after the backup: the rerun keeps the journaled file; killed
    before it: nothing was dropped, and rollback still works."""
    from qdrant_compat.store import Store

    tmp, client = legacy
    green = "legacy--omni-indep-2"
    run_upgrade(client, "live", "omni-indep@2", strategy="backfill", layout="blue_green")
    cutover(client, "live", grace=0)
    real = Store.backup

    def dying(self, *a, **kw):
        if dies == "after":
            real(self, *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "backup", dying)
    with pytest.raises(KeyboardInterrupt):
        cleanup(client, "live", yes=True, backup_dir=tmp_path / "bk")
    monkeypatch.undo()
    assert client.store.exists("legacy") and client.store.count("legacy") == 150
    job = client.get_meta(green).job
    if dies == "after":
        assert job.cleanup is not None and not job.cleanup.made
        out = cleanup(client, "live", yes=True, backup_dir=tmp_path / "bk")
        assert [f.name for f in (tmp_path / "bk").iterdir()] == [Path(out.backup).name]
        assert not client.store.exists("legacy") and client.get_meta(green).job.phase == Phase.CLEANED
        assert client.store.restore(out.backup, "legacy-restored") == 150
    else:
        assert job.cleanup is None and job.lock is None  # the unwritten backup is forgotten on the way out
        rollback(client, "live", grace=0)
        assert client.store.resolve("live") == "legacy"
        assert client.get_meta("legacy").job.phase == Phase.ROLLED_BACK
