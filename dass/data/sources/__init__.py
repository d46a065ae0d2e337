"""Real image sources for unseen tasks: Fashion-MNIST, fonts (one class per character) and icon themes
(one class per icon name).

Each source reads its raw files into a :class:`~dass.data.sources.pool.Pool` -- every image at one size,
its class and its *group* (Fashion-MNIST's official train/test file, a font family, an icon theme), the
unit that train and test are split by. :func:`~dass.data.sources.cache.pool_for` caches pools;
:func:`~dass.data.sources.subsets.make_subset_task` draws tasks from a pool in the layout
:mod:`dass.data.synthetic` writes.

Getting the raw files (default roots relative to the data root, see :func:`default_root`):

- fashion_mnist -> ``<data>/fashion_mnist``: ``python download/download_dataset.py --name fashion_mnist``
  (or ``--from-folder /usr/share/datasets/fashion-mnist`` after ``apt-get install dataset-fashion-mnist``)
- fonts -> ``<data>/sources/fonts``: ``python download/download_sources.py --group fonts``
- icons -> ``<data>/sources/icons``: ``python download/download_sources.py --group icons``
"""
from __future__ import annotations

from .cache import pool_for
from .pool import Pool, load_pool, provenance_digest, save_pool, split_groups
from .registry import DEFAULT_ROOTS, SOURCE_FILES, SOURCES, VERSIONS, default_root
from .subsets import make_subset_task

__all__ = ["SOURCES", "SOURCE_FILES", "VERSIONS", "DEFAULT_ROOTS", "default_root", "Pool", "load_pool", "save_pool",
           "pool_for", "provenance_digest", "split_groups", "make_subset_task"]
