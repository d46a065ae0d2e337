"""``main.py make-splits``: the 10 Tiny ImageNet class splits in the authors' format
(docs/method.md#benchmark).

Reads ``<root>/labels/train_labels.npy`` and writes ``<root>/10_split/split_{k}.npz`` (label_list,
idx_train, idx_valid); see :mod:`dass.data.splits` for how classes and images are chosen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.splits import make_tiny_imagenet_splits


def add_arguments(p) -> None:
    p.add_argument("--root", default=None, help="Tiny ImageNet folder (default: <data.root>/tiny_imagenet)")
    p.add_argument("--seed", type=int, default=0, help="seed of the class choice and the train/valid partition")
    p.add_argument("--num-splits", type=int, default=10)
    p.add_argument("--classes-per-split", type=int, default=40)
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of each class's images in idx_valid")
    p.add_argument("--force", action="store_true", help="overwrite existing split files")


def run(cfg, args) -> int:
    root = Path(args.root) if args.root is not None else Path(cfg.data.root) / "tiny_imagenet"
    paths = make_tiny_imagenet_splits(root, num_splits=args.num_splits, classes_per_split=args.classes_per_split,
                                      seed=args.seed, valid_fraction=args.valid_fraction, force=args.force)
    for p in paths:
        with np.load(p) as z:
            print(f"{p}: {len(z['label_list'])} classes, {len(z['idx_train'])} train / {len(z['idx_valid'])} "
                  f"valid images")
    return 0
