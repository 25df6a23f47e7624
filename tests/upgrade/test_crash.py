"""SIGKILL ``upgrade run`` at random points, resume, and check every point ends exactly right (S5, small)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from qdrant_compat import CompatClient
from qdrant_compat.runtime.embedder import Embedder
from qdrant_compat.upgrade.verify import check_fill, payload_snapshot


def _cmd(tmp, *args):
    return [sys.executable, "-m", "qdrant_compat.cli.main", "--path", str(tmp / "store"), "--registry", str(tmp / "reg"),
            "--no-progress", *args]


def test_sigkill_at_random_points_then_resume(world):
    tmp, client = world
    before = payload_snapshot(client, "g")
    client.close()
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills, left = 0, []
    for _trial in range(3):
        proc = subprocess.Popen(_cmd(tmp, "-v", "upgrade", "run", "g", "--to", "omni-indep@2", "--batch-size", "8",
                                     "--lock-ttl", "300"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # kill once the run has written a random number of batches (so the kill lands mid-fill, whatever the speed)
        wanted, seen = int(rng.integers(1, 4)), 0
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += "points written" in line
            if seen >= wanted:
                time.sleep(float(rng.uniform(0.0, 0.05)))
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")  # what the dead run left
        job, filled = c.get_meta("g").job, c.count_with_vector("g", "omni-indep@2")
        c.close()
        left.append((job.phase.value, filled))
    done = subprocess.run(_cmd(tmp, "--json", "upgrade", "run", "g", "--to", "omni-indep@2", "--batch-size", "8"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert kills == 3, left  # every run really died mid-way: none got to finish its 19 batches
    assert all(phase == "running" and 0 < filled < 150 for phase, filled in left), left
    assert [f for _, f in left] == sorted(f for _, f in left)  # each resumed what the last one left, nothing lost
    # the last run did only what was left: at most the one batch whose vectors landed before its marks is redone
    assert 150 - left[-1][1] <= json.loads(done.stdout)["processed"] <= 150 - left[-1][1] + 8
    c = CompatClient(path=str(tmp / "store"), registry=tmp / "reg")
    emb = Embedder(c.registry.get_model("omni-indep@2"))
    res = check_fill(c, "g", "omni-indep@2", payloads=before,
                     reference=lambda recs: emb.embed([r.payload["image_path"] for r in recs]))
    c.close()
    assert res["ok"], res
    assert res["points"] == 150
