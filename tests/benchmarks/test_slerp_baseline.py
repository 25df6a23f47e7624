"""The training-free SLERP baseline of the Q7 benchmark: Procrustes and spherical interpolation."""

from __future__ import annotations

import numpy as np

from benchmarks.p1_nolabel import procrustes, slerp


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_procrustes_recovers_a_rotation_from_unlabelled_pairs():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    src = rng.normal(size=(400, 16)).astype(np.float32)
    dst = src @ q + 0.01 * rng.normal(size=(400, 16))
    rot = procrustes(src, dst)
    assert np.allclose(rot @ rot.T, np.eye(16), atol=1e-5) and np.abs(rot - q).max() < 0.01


def test_slerp_ends_at_its_two_points_and_stays_on_the_sphere_at_equal_angles():
    rng = np.random.default_rng(1)
    a, b = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(50, 8)))
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-6) and np.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert np.allclose(np.linalg.norm(mid, axis=1), 1.0)
    assert np.allclose((mid * a).sum(1), (mid * b).sum(1), atol=1e-6)  # the midpoint is equally far from both
    same = slerp(a, 3 * a, 0.3)  # b not unit, and identical direction: no division by sin(0)
    assert np.allclose(same, a, atol=1e-6)
