"""Cache frozen EfficientNet-Lite0/Lite2 features of Tiny-ImageNet-100 (train + val) once per machine.

    python -m benchmarks.cache_features [--data DIR]
"""

from __future__ import annotations

import argparse
import logging

from benchmarks.common import NEW_BACKBONE, OLD_BACKBONE, backbone_features, data_dir, tiny_imagenet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train, test = tiny_imagenet(data_dir(args.data))
    for bb in (OLD_BACKBONE, NEW_BACKBONE):
        for split, src in (("test", test), ("train", train)):
            backbone_features(bb, split, src)


if __name__ == "__main__":
    main()
