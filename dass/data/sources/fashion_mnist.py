"""Fashion-MNIST as a pool: the four official idx files, read with torchvision's idx readers.

``root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``). Groups are ``train`` (the official train
file) and ``test``; :func:`dass.data.sources.pool.split_groups` keeps that split. The 28 x 28 images
are resized with Pillow's box filter (an area average: the same bytes on every machine).
"""
from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import ConfigError, DataError
from .pool import Pool, file_records

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MAGIC = {3: 0x00000803, 1: 0x00000801}   # unsigned-byte data, 3 dims (images) / 1 dim (labels)
_HINT = ("get it with `python download/download_dataset.py --name fashion_mnist`, or `--from-folder "
         "/usr/share/datasets/fashion-mnist` after `apt-get install dataset-fashion-mnist`")


def _locate(root: Path, name: str) -> Path:
    for p in (root / name, root / f"{name}.gz"):
        if p.is_file():
            return p
    raise DataError(f"Fashion-MNIST file {root / name} (or {name}.gz) does not exist; {_HINT}")


def source_files(root: str | os.PathLike, **_) -> list[Path]:
    """The four idx files (plain or .gz) under ``root``; a missing one is a DataError."""
    root = Path(root)
    return [_locate(root, n) for pair in FILES.values() for n in pair]


def _raw_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Fashion-MNIST file {path} is not a whole gzip file ({e}); delete it and {_HINT}") from None


def _check_header(data: bytes, path: Path, ndim: int) -> tuple[int, ...]:
    """The dims of an idx file after checking its magic number and its length."""
    head = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != _MAGIC[ndim]:
        found = "no header" if magic is None else f"magic number 0x{magic:08x}"
        raise DataError(f"Fashion-MNIST file {path} has {found}, expected 0x{_MAGIC[ndim]:08x} (an idx file of "
                        f"{'images' if ndim == 3 else 'labels'}); delete it and {_HINT}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)) if len(data) >= head else ()
    if len(dims) != ndim or len(data) != head + int(np.prod(dims)):
        raise DataError(f"Fashion-MNIST file {path} is truncated ({len(data)} bytes for dims {dims}); delete it "
                        f"and {_HINT}")
    return dims


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Check the file ourselves (one-line errors), then read it with torchvision's reader."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    data = _raw_bytes(path)
    _check_header(data, path, ndim)
    reader = read_image_file if ndim == 3 else read_label_file
    if path.suffix != ".gz":
        return reader(str(path)).numpy()
    with tempfile.TemporaryDirectory(prefix="dass-idx-") as tmp:  # the reader wants a path, not bytes
        plain = Path(tmp) / path.stem
        plain.write_bytes(data)
        return reader(str(plain)).numpy()


def resize_box(images: np.ndarray, size: int) -> np.ndarray:
    """N x H x W uint8 -> N x size x size with Pillow's box filter (deterministic area average)."""
    if images.shape[1:] == (size, size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), Image.BOX))
    return out


def _read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    ip, lp = (_locate(root, n) for n in FILES[split])
    images, labels = _read_idx(ip, 3), _read_idx(lp, 1).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise DataError(f"Fashion-MNIST file {ip} holds {images.shape[1]}x{images.shape[2]} images, expected "
                        f"28x28; delete it and {_HINT}")
    if len(images) != len(labels):
        raise DataError(f"Fashion-MNIST file {lp} has {len(labels)} labels for the {len(images)} images of {ip}; "
                        f"one of them is truncated or from another dataset: {_HINT}")
    if len(labels) and labels.max() >= len(CLASSES):
        raise DataError(f"Fashion-MNIST file {lp} has label {labels.max()}, expected 0..9; {_HINT}")
    return images, labels


def read_pool(root: str | os.PathLike, image_size: int, progress: bool = False) -> Pool:
    """Every Fashion-MNIST image at ``image_size``; groups ``train`` / ``test`` (the official files).
    ``progress`` is accepted like the other sources' (reading takes about a second)."""
    if not isinstance(image_size, int) or image_size < 4:
        raise ConfigError(f"fashion_mnist: image_size is {image_size!r}; it must be an integer >= 4")
    root = Path(root)
    parts = [_read_split(root, s) for s in ("train", "test")]
    images = resize_box(np.concatenate([p[0] for p in parts]), int(image_size))
    labels = np.concatenate([p[1] for p in parts])
    groups = np.concatenate([np.full(len(p[1]), g, dtype=np.int64) for g, p in enumerate(parts)])
    meta = {"source": "fashion_mnist", "params": {}, "image_size": int(image_size),
            "files": file_records(root, source_files(root)),
            "versions": versions(), "resize": "PIL box" if image_size != 28 else "none"}
    return Pool("fashion_mnist", images, labels, list(CLASSES), groups, ["train", "test"], meta)


def versions() -> dict:
    import PIL
    import torchvision

    return {"torchvision": torchvision.__version__, "Pillow": PIL.__version__}
