"""Pools are slow to render: :func:`pool_for` caches one ``.npz`` per source, size and parameters.

The cache stores the spec it was built from -- source, parameters, image size, library versions and a
digest of every source file's sha256 -- and is rebuilt when any of these changes.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from ...errors import ConfigError, DataError
from .pool import POOL_FORMAT, Pool, _digest, file_records, load_pool, save_pool
from .registry import SOURCE_FILES, SOURCES, VERSIONS


def _spec(source: str, root: Path, image_size: int, params: dict) -> dict:
    files = file_records(root, SOURCE_FILES[source](root, **params))
    return {"format": POOL_FORMAT, "source": source, "image_size": int(image_size), "params": params,
            "versions": VERSIONS[source](), "files": _digest(files), "num_files": len(files)}


def _check_param_names(source: str, reader, params: dict) -> None:
    sig = inspect.signature(reader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        return
    allowed = [n for n in sig if n not in ("root", "image_size", "progress")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for image source '{source}'; it takes: "
                          f"{', '.join(allowed) or 'none'}")


def pool_for(source: str, root: str | os.PathLike, image_size: int, cache_dir: str | os.PathLike, *,
             progress: bool = False, **params) -> Pool:
    """The pool of ``source`` read from ``root`` at ``image_size``, from ``cache_dir`` when a cached pool
    was built from the same spec (module doc), else read, cached atomically and returned."""
    if source not in SOURCES:
        raise ConfigError(f"unknown image source '{source}'; use one of {', '.join(SOURCES)}")
    _check_param_names(source, SOURCES[source], params)
    params = json.loads(json.dumps(params))   # tuples -> lists: the spec compares as stored
    root = Path(root)
    spec = _spec(source, root, image_size, params)
    cache = Path(cache_dir) / f"{source}-{int(image_size)}px-{_digest(params)[:12]}.npz"
    if cache.is_file():
        try:
            pool = load_pool(cache)
            if pool.meta.get("spec") == spec:
                return pool
        except DataError:
            pass  # a torn or foreign cache file is rebuilt like a stale one
    pool = SOURCES[source](root, image_size, progress=progress, **params)
    pool.meta["spec"] = spec
    save_pool(pool, cache)
    return pool


