"""Tasks drawn from a pool: a few classes, a few train images per class, the test images of unseen groups.

:func:`make_subset_task` returns the dict :func:`dass.data.synthetic.make_task` returns (``meta`` and the
four arrays), so :func:`dass.data.synthetic.write_task` writes it in the numpy task layout. Train images
come only from the pool's train groups and test images only from its test groups
(:func:`dass.data.sources.pool.split_groups`): a task's test images are of fonts / themes its train
images never show. Every draw comes from one seeded stream per ``(seed, source, index)``.
"""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from .pool import Pool, provenance_digest, source_key, split_groups


def _range(value, key: str, minimum: int) -> tuple[int, int]:
    ints = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    if not ints or not minimum <= value[0] <= value[1]:
        raise ConfigError(f"{key} is {value!r}; it must be (lo, hi) with {minimum} <= lo <= hi")
    return int(value[0]), int(value[1])


def eligible_classes(pool: Pool, test_mask: np.ndarray, min_train: int) -> np.ndarray:
    """Classes with at least ``min_train`` train-group images and at least one test-group image."""
    n = len(pool.classes)
    train = np.bincount(pool.labels[~test_mask], minlength=n)
    test = np.bincount(pool.labels[test_mask], minlength=n)
    return np.flatnonzero((train >= min_train) & (test >= 1))


def _too_few(pool: Pool, name: str, test_mask: np.ndarray, k_hi: int, t_range: tuple[int, int], n_ok: int):
    n_lo = len(eligible_classes(pool, test_mask, t_range[0]))
    also = (f", or lower train_per_class's upper bound ({n_lo} classes have {t_range[0]} train images)"
            if n_lo > n_ok else "")
    return ConfigError(f"task {name}: the {pool.source} pool has {n_ok} classes with >= {t_range[1]} train images "
                       f"and a test image, but num_classes asks for up to {k_hi}; lower num_classes' upper bound "
                       f"to at most {n_ok}{also}")


def _pick(rng: np.random.Generator, idx: np.ndarray, n: int) -> np.ndarray:
    return np.sort(rng.choice(idx, n, replace=False)) if len(idx) > n else idx


def make_subset_task(pool: Pool, name: str, seed: int, index: int, num_classes=(5, 10), train_per_class=(10, 50),
                     test_per_class: int = 0, test_fraction: float = 0.3, attempt: int = 0) -> dict:
    """Task ``name`` (number ``index``) from ``pool``: ``k`` classes in ``num_classes``, ``t`` train images per
    class in ``train_per_class`` (one ``t`` for the whole task), every test-group image of those classes (at
    most ``test_per_class`` when > 0); labels 0..k-1 in the pool's class order. ``attempt`` > 0 redraws the
    task from a stream of its own (make-tasks redraws a task whose teacher does not learn it)."""
    k_range, t_range = _range(num_classes, "num_classes", 2), _range(train_per_class, "train_per_class", 1)
    if not isinstance(test_per_class, (int, np.integer)) or test_per_class < 0:
        raise ConfigError(f"test_per_class is {test_per_class!r}; it must be an integer >= 0 (0: every test image)")
    test_mask = split_groups(pool, test_fraction, seed)
    ok = eligible_classes(pool, test_mask, t_range[1])
    if len(ok) < k_range[1]:
        raise _too_few(pool, name, test_mask, k_range[1], t_range, len(ok))
    entropy = [int(seed), source_key(pool.source), 2, int(index)] + ([int(attempt)] if attempt else [])
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    k = int(rng.integers(k_range[0], k_range[1] + 1))
    chosen = np.sort(rng.choice(ok, k, replace=False))
    t = int(rng.integers(t_range[0], t_range[1] + 1))
    train, test = [], []
    for c in chosen:
        of_class = pool.labels == c
        train.append(_pick(rng, np.flatnonzero(of_class & ~test_mask), t))
        te = np.flatnonzero(of_class & test_mask)
        test.append(_pick(rng, te, int(test_per_class)) if test_per_class else te)
    tr, te = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    relabel = np.full(len(pool.classes), -1, dtype=np.int64)
    relabel[chosen] = np.arange(k)
    meta = {"name": name, "source": pool.source, "num_classes": k, "classes": [pool.classes[c] for c in chosen],
            "train_per_class": t, "test_images": int(len(te)), "seed": int(seed), "index": int(index),
            "test_fraction": float(test_fraction), "test_per_class": int(test_per_class),
            "attempt": int(attempt),
            "train_groups": sorted({pool.group_names[g] for g in pool.groups[tr]}),
            "test_groups": sorted({pool.group_names[g] for g in pool.groups[te]}),
            "pool": provenance_digest(pool), "image_size": pool.image_size}
    return {"meta": meta, "train_images": pool.images[tr], "train_labels": relabel[pool.labels[tr]],
            "test_images": pool.images[te], "test_labels": relabel[pool.labels[te]]}
