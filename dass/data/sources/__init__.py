"""Real image sources for unseen tasks: Fashion-MNIST, fonts (one class per character) and icon themes
(one class per icon name).

Each source reads its raw files into a :class:`~dass.data.sources.pool.Pool` -- every image at one size,
its class and its *group* (Fashion-MNIST's official train/test file, a font family, an icon theme), the
unit that train and test are split by. :func:`~dass.data.sources.pool.pool_for` caches pools;
:func:`~dass.data.sources.subsets.make_subset_task` draws tasks from a pool in the layout
:mod:`dass.data.synthetic` writes.

Getting the raw files (default roots relative to the data root, see :func:`default_root`):

- fashion_mnist -> ``<data>/fashion_mnist``: ``python download/download_dataset.py --name fashion_mnist``
  (or ``--from-folder /usr/share/datasets/fashion-mnist`` after ``apt-get install dataset-fashion-mnist``)
- fonts -> ``<data>/sources/fonts``: ``python download/download_sources.py --group fonts``
- icons -> ``<data>/sources/icons``: ``python download/download_sources.py --group icons``
"""
from __future__ import annotations

from pathlib import Path

from . import fashion_mnist, fonts, icons
from .pool import Pool, load_pool, pool_for, provenance_digest, save_pool, split_groups
from .subsets import make_subset_task

SOURCES = {"fashion_mnist": fashion_mnist.read_pool, "fonts": fonts.read_pool, "icons": icons.read_pool}
SOURCE_FILES = {"fashion_mnist": fashion_mnist.source_files, "fonts": fonts.source_files,
                "icons": icons.source_files}
VERSIONS = {"fashion_mnist": fashion_mnist.versions, "fonts": fonts.versions, "icons": icons.versions}
DEFAULT_ROOTS = {"fashion_mnist": "fashion_mnist", "fonts": "sources/fonts", "icons": "sources/icons"}


def default_root(source: str, data_root: str | Path = "data") -> Path:
    """Where the downloaders put a source's raw files, under ``data_root`` (``data`` by default)."""
    from ...errors import ConfigError

    if source not in DEFAULT_ROOTS:
        raise ConfigError(f"unknown image source '{source}'; use one of {', '.join(DEFAULT_ROOTS)}")
    return Path(data_root) / DEFAULT_ROOTS[source]


__all__ = ["SOURCES", "SOURCE_FILES", "VERSIONS", "DEFAULT_ROOTS", "default_root", "Pool", "load_pool", "save_pool",
           "pool_for", "provenance_digest", "split_groups", "make_subset_task"]
