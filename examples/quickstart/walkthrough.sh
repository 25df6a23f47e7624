#!/usr/bin/env bash
# The README's five-minute CLI walkthrough with a few more looks (model list, collection info, status):
#   bash examples/quickstart/walkthrough.sh [WORKDIR]   (default WORKDIR: walkthrough/)
set -euo pipefail
W=${1:-walkthrough}
DATA=examples/data/omniglot_small.npz
qc() { qdrant-compat --path "$W/qdrant" --registry "$W/registry" "$@"; }
rm -rf "$W" && mkdir -p "$W"

# 1. train v1 on 100 Omniglot classes, export to ONNX (parity-checked) and register it
qc train $DATA --max-classes 100 --channels 1 --size 28 --dim 64 --epochs 8 --batch-size 64 --lr 3e-3 \
   --out "$W/ckpt-v1" --register omniglot@1
qc model list

# 2. index a gallery (an image folder root/<class>/<image>) into a versioned collection, and search it
python examples/quickstart/make_gallery.py "$W/gallery" --classes 150
qc index "$W/gallery" --collection gallery --model omniglot@1
qc collection info gallery
IMG=$(ls "$W"/gallery/0000_*/* | head -1)
qc search "$IMG" --collection gallery --model omniglot@1 -k 3

# 3. train v2 on 150 classes, backward-compatible with the frozen v1 (the gate measures new/old vs old/old on the
#    test drawers after every epoch and keeps the best passing epoch); measure and record the edge
qc train $DATA --max-classes 150 --channels 1 --size 28 --dim 64 --epochs 12 --batch-size 64 --lr 3e-3 \
   --old-model omniglot@1 --gate-data $DATA --gate-split test --out "$W/ckpt-v2" --register omniglot@2
qc evaluate $DATA --split test --max-classes 150 --seen-classes 100 \
   --model omniglot@1 --model omniglot@2 --record omniglot@2 --report "$W/report"

# 4. upgrade the collection in place: plan (changes nothing), run, and query with v2
qc upgrade plan gallery --to omniglot@2
qc upgrade run gallery --to omniglot@2   # refused, with the figures, if the recorded criterion failed
qc search "$IMG" --collection gallery --model omniglot@2 -k 3
qc upgrade status gallery
