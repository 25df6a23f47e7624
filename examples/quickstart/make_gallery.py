"""Write Omniglot test images as an image folder (root/<class>/<image>.png) for the CLI walkthrough.

    python examples/quickstart/make_gallery.py OUT_DIR [--classes 150]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qdrant_compat.data import load_npz, write_image_folder

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "omniglot_small.npz"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=150)
    a = ap.parse_args()
    test = load_npz(FIXTURE, "test")
    paths = write_image_folder(test, a.out, np.flatnonzero(test.labels < a.classes))
    print(f"wrote {len(paths)} images of {a.classes} classes under {a.out}")
