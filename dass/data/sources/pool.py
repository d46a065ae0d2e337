"""A pool: every image of one real source at one square size, with its class and its group.

The *group* is the unit that train and test are split by (a font family, an icon theme, Fashion-MNIST's
official train/test files), so that no family or theme lends images to both sides of a task
(:func:`split_groups`). Pools are slow to render and are cached (:mod:`dass.data.sources.cache`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import ConfigError, DataError
from ...io import atomic_write_bytes, sha256_file

POOL_FORMAT = 1
_ARRAYS = ("images", "labels", "groups", "classes", "group_names", "source", "meta")


@dataclass
class Pool:
    source: str                 # "fashion_mnist" | "fonts" | "icons"
    images: np.ndarray          # uint8, N x S x S (greyscale) or N x S x S x 3 (RGB)
    labels: np.ndarray          # int64, N, index into classes
    classes: list[str]
    groups: np.ndarray          # int64, N, index into group_names
    group_names: list[str]
    meta: dict = field(default_factory=dict)   # provenance: source files (path + sha256), versions, parameters

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def check_pool(pool: Pool, where: str) -> Pool:
    """Raise a one-line DataError naming ``where`` unless the arrays fit together."""
    x, n = pool.images, len(pool.images)
    ok_shape = x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)
    if x.dtype != np.uint8 or not ok_shape or (n and x.shape[1] != x.shape[2]):
        problem = f"images of dtype {x.dtype} and shape {tuple(x.shape)} (expected uint8 N x S x S [x 3])"
    elif pool.labels.shape != (n,) or pool.groups.shape != (n,):
        problem = f"{len(pool.labels)} labels and {len(pool.groups)} groups for {n} images"
    elif n and (pool.labels.min() < 0 or pool.labels.max() >= len(pool.classes)):
        problem = f"labels outside [0, {len(pool.classes)})"
    elif n and (pool.groups.min() < 0 or pool.groups.max() >= len(pool.group_names)):
        problem = f"groups outside [0, {len(pool.group_names)})"
    else:
        return pool
    raise DataError(f"pool {where} holds {problem}; delete it, it is rebuilt from the sources")


def save_pool(pool: Pool, path: str | os.PathLike) -> Path:
    """One ``.npz`` (no pickles: names as unicode arrays, meta as a JSON string), written atomically."""
    check_pool(pool, str(path))
    buf = io.BytesIO()
    np.savez(buf, images=pool.images, labels=pool.labels.astype(np.int64), groups=pool.groups.astype(np.int64),
             classes=np.array(pool.classes, dtype=str), group_names=np.array(pool.group_names, dtype=str),
             source=np.array(pool.source), meta=np.array(json.dumps(pool.meta, sort_keys=True)))
    return atomic_write_bytes(path, buf.getvalue())


def load_pool(path: str | os.PathLike) -> Pool:
    """Read a pool written by :func:`save_pool`; a missing, truncated or foreign file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pool {path} does not exist; build it with dass.data.sources.pool_for")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _ARRAYS if k not in z.files]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
            pool = Pool(source=str(z["source"]), images=z["images"], labels=z["labels"].astype(np.int64),
                        classes=[str(c) for c in z["classes"]], groups=z["groups"].astype(np.int64),
                        group_names=[str(g) for g in z["group_names"]], meta=json.loads(str(z["meta"])))
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError, JSONDecodeError ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"pool {path} is truncated or not a pool ({reason}); delete it, it is rebuilt from the "
                        f"sources") from None
    return check_pool(pool, str(path))


# ----------------------------------------------------------------------------------------- provenance
def file_records(root: Path, paths: Iterable[Path]) -> list[dict]:
    """``[{"path": relative to root, "sha256"}]`` for provenance (the same real file is hashed once)."""
    cache: dict[str, str] = {}
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in cache:
            cache[real] = sha256_file(real)
        out.append({"path": Path(p).relative_to(root).as_posix(), "sha256": cache[real]})
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def provenance_digest(pool: Pool) -> str:
    """One digest of where a pool came from: source, image size, parameters, versions, files."""
    m = pool.meta
    return _digest({"source": pool.source, "image_size": pool.image_size, "params": m.get("params"),
                    "versions": m.get("versions"), "files": m.get("files")})


def source_key(source: str) -> int:
    """A stable integer for a source name (RNG streams must not depend on Python's hash seed)."""
    return zlib.crc32(source.encode())


# -------------------------------------------------------------------------------------------- split
def split_groups(pool: Pool, test_fraction: float, seed: int) -> np.ndarray:
    """Per image: True when its group is a test group. Fashion-MNIST keeps its official split (group
    "test"); other sources draw ``round(test_fraction * groups)`` test groups (at least one on each side)
    from a seeded stream, so the split is the same on every machine."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction is {test_fraction}; it must lie strictly between 0 and 1")
    if pool.source == "fashion_mnist":
        if "test" not in pool.group_names:
            raise DataError("the fashion_mnist pool has no 'test' group; delete the cached pool and rebuild it")
        return pool.groups == pool.group_names.index("test")
    present = np.unique(pool.groups)
    if len(present) < 2:
        raise ConfigError(f"the {pool.source} pool has images of {len(present)} group(s); at least 2 are needed "
                          f"to keep train and test apart (add fonts/themes to its folder)")
    n_test = min(len(present) - 1, max(1, int(round(float(test_fraction) * len(present)))))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), source_key(pool.source), 1]))
    test_groups = rng.choice(present, n_test, replace=False)
    return np.isin(pool.groups, test_groups)
