"""Which real image sources exist, how each is read, and where its raw files live by default."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from . import fashion_mnist, fonts, icons

SOURCES = {"fashion_mnist": fashion_mnist.read_pool, "fonts": fonts.read_pool, "icons": icons.read_pool}
SOURCE_FILES = {"fashion_mnist": fashion_mnist.source_files, "fonts": fonts.source_files,
                "icons": icons.source_files}
VERSIONS = {"fashion_mnist": fashion_mnist.versions, "fonts": fonts.versions, "icons": icons.versions}
DEFAULT_ROOTS = {"fashion_mnist": "fashion_mnist", "fonts": "sources/fonts", "icons": "sources/icons"}


def default_root(source: str, data_root: str | Path = "data") -> Path:
    """Where the downloaders put a source's raw files, under ``data_root`` (``data`` by default)."""
    if source not in DEFAULT_ROOTS:
        raise ConfigError(f"unknown image source '{source}'; use one of {', '.join(DEFAULT_ROOTS)}")
    return Path(data_root) / DEFAULT_ROOTS[source]
