"""Tiny ImageNet class splits in the authors' format (docs/method.md#benchmark).

The authors' release lacks the generator (docs/method.md#authors-compat).

A split file ``<root>/<num_splits>_split/split_<k>.npz`` holds three int64 arrays, read by the
authors' meta-train loader as follows (and by :func:`dass.data.tasks.load_tiny_imagenet` the same way):

- ``label_list``: the split's classes (original Tiny ImageNet ids); label ``y`` becomes
  ``label_list.index(y)``, so the task has ``len(label_list)`` classes;
- ``idx_train`` / ``idx_valid``: indices into the 200-class **train** arrays; the split's teacher
  and students train on ``idx_train`` and are evaluated on ``idx_valid``.

Decisions (the release does not say; documented here and in the README):

- Within a split, ``idx_train`` and ``idx_valid`` are disjoint and cover every train image of the
  split's classes; ``idx_valid`` holds a seeded ``valid_fraction`` (10%: 50 of 500 per class, the
  size of the official validation set) of each class, the rest is ``idx_train``.
- Across splits, classes cannot be disjoint (10 x 40 = 400 slots for 200 classes). They are spread
  evenly: every split takes the classes used least so far, ties broken at random, so with the paper's
  numbers each class appears in exactly two splits (once among splits 0-4, once among 5-9) and no
  split repeats a class. Each split draws its own train/valid partition.
- ``label_list`` is stored sorted; the index arrays are sorted ascending (the authors' sampler
  shuffles anyway). Everything depends only on ``seed``.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes
from .tasks import load_npy, tiny_imagenet_labels_path, validate_labels


def split_dir(root: str | Path, num_splits: int = 10) -> Path:
    return Path(root) / f"{num_splits}_split"


def choose_classes(classes: np.ndarray, num_splits: int, classes_per_split: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Balanced class subsets: each split takes the least-used classes (random tie-break)."""
    used = np.zeros(len(classes), dtype=np.int64)
    out = []
    for _ in range(num_splits):
        key = np.lexsort((rng.random(len(classes)), used))   # primary: usage, secondary: random
        pick = np.sort(key[:classes_per_split])
        used[pick] += 1
        out.append(classes[pick])
    return out


def make_split(labels: np.ndarray, label_list: np.ndarray, valid_fraction: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded ``valid_fraction`` of its images to ``idx_valid``, the rest to ``idx_train``."""
    train, valid = [], []
    for c in label_list:
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_valid = min(max(1, int(round(valid_fraction * len(idx)))), len(idx) - 1)
        valid.append(idx[:n_valid])
        train.append(idx[n_valid:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(valid)).astype(np.int64)


def make_tiny_imagenet_splits(root: str | Path, num_splits: int = 10, classes_per_split: int = 40, seed: int = 0,
                              valid_fraction: float = 0.1, force: bool = False) -> list[Path]:
    """Write ``root/<num_splits>_split/split_{k}.npz`` from ``root``'s train labels; returns the paths.

    ``root`` is the Tiny ImageNet folder (holding ``labels/train_labels.npy`` or
    ``train_labels.npy``). Existing split files (e.g. the authors' downloaded ones) are kept unless
    ``force``.
    """
    root = Path(root)
    lp = tiny_imagenet_labels_path(root)
    labels = validate_labels(load_npy(lp, "download Tiny ImageNet first (labels/train_labels.npy)"), lp)
    classes, counts = np.unique(labels, return_counts=True)
    if num_splits < 1 or classes_per_split < 1:
        raise DataError(f"make-splits needs at least one split of at least one class, got {num_splits} splits of "
                        f"{classes_per_split} classes")
    if classes_per_split > len(classes):
        raise DataError(f"{lp} has {len(classes)} classes, fewer than the {classes_per_split} asked per split; "
                        f"lower --classes-per-split")
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"make-splits needs 0 < valid_fraction < 1, got {valid_fraction}")
    if counts.min() < 2:
        raise DataError(f"{lp}: class {int(classes[counts.argmin()])} has {int(counts.min())} image(s); every class "
                        f"needs at least 2 to give both idx_train and idx_valid")
    out_dir = split_dir(root, num_splits)
    paths = [out_dir / f"split_{k}.npz" for k in range(num_splits)]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise DataError(f"split file {existing[0]} already exists; pass --force to overwrite it (the authors' splits "
                        f"would be replaced)")
    subsets = choose_classes(classes, num_splits, classes_per_split,
                             np.random.default_rng(np.random.SeedSequence([int(seed), 0])))
    for k, (path, label_list) in enumerate(zip(paths, subsets)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1, k]))
        idx_train, idx_valid = make_split(labels, label_list, valid_fraction, rng)
        buf = io.BytesIO()
        np.savez(buf, label_list=label_list.astype(np.int64), idx_train=idx_train, idx_valid=idx_valid)
        atomic_write_bytes(path, buf.getvalue())
    return paths
