"""Datasets in the authors' numpy layout (docs/method.md#benchmark, #file-formats) behind one in-memory type.

Every task -- a Tiny ImageNet split, an unseen dataset, a generated task of the embedded default --
is a :class:`TaskData`: uint8 NHWC image arrays (memory-mapped where possible) and int64 labels.

Layouts read by :func:`load_task` (``root`` = ``cfg.data.root``):

- ``tiny_imagenet-K`` (K = 0..9): ``root/tiny_imagenet/{train_images.npy, valid_images.npy,
  labels/train_labels.npy, labels/valid_labels.npy, 10_split/split_K.npz}``. As in the authors'
  meta-train loader, BOTH the task's train and its evaluation split are drawn from the 200-class
  *train* arrays: ``idx_train`` / ``idx_valid`` index ``train_images``, and a label ``y`` becomes
  ``label_list.index(y)`` (0..39). ``valid_images`` is therefore not read for meta-training.
- ``cub``, ``dtd``, ``quickdraw``, ``stanford_cars`` and any other name (the generated ``synth-K``,
  ``digits``, a user's own data): ``root/<name>/{train,test}_{images,labels}.npy``. QuickDraw is
  greyscale (converted to RGB) and its train split is cut to the first
  ``cfg.data.quickdraw_train_per_class`` images of each class (docs/method.md#benchmark). A generic folder may hold
  ``meta.json`` with ``num_classes``; otherwise it is ``max(label) + 1``.

Every file is checked on load (exists, readable, uint8 N x H x W x 3 or N x H x W greyscale,
integer labels in range, one label per image); each failure is a one-line :class:`DataError`
naming the file. Greyscale arrays become RGB through a zero-copy broadcast view, so even converted
arrays stay memory-mapped until a batch is drawn.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes, atomic_write_text
from .loader import BatchLoader


@dataclass
class TaskData:
    name: str
    train_images: np.ndarray   # uint8, N x H x W x 3
    train_labels: np.ndarray   # int64, N, values in [0, num_classes)
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_images.shape[1:])


# Class counts of the authors' unseen datasets (docs/method.md#benchmark); labels outside them are an error.
KNOWN_NUM_CLASSES = {"cub": 200, "dtd": 47, "quickdraw": 345, "stanford_cars": 196}
TINY_IMAGENET_CLASSES = 200
TINY_IMAGENET_SPLITS = 10

# Names the project writes itself (dass.data.generate: the synthetic family, digits and the real sources'
# class-subset tasks); a missing folder means "run make-tasks".
SOURCE_NAMES = ("fonts", "icons", "fashion_mnist")      # dass.data.sources.registry reads them
SOURCE_TASK = re.compile(rf"^({'|'.join(SOURCE_NAMES)})-(\d+)$")
GENERATED_TASK = re.compile(rf"^(synth-\d+|digits|({'|'.join(SOURCE_NAMES)})-\d+)$")
COMPLETE_MARKER = ".complete"


# --------------------------------------------------------------------------------------------- #
# reading and validating arrays
# --------------------------------------------------------------------------------------------- #

def _hint(name: str) -> str:
    if GENERATED_TASK.match(name):
        return "generate it with `python main.py make-tasks --config <config>`"
    if name.startswith("tiny_imagenet") or name in KNOWN_NUM_CLASSES:
        return ("download it with `python download/download_dataset.py` or check data.root (for the embedded "
                "default on generated data use --config configs/demo.yaml)")
    return "check data.root or put the arrays there in the numpy layout"


def task_files(name: str, root: str | Path) -> list[Path]:
    """The files ``load_task`` reads for a task (existence only; contents are checked on loading)."""
    root = Path(root)
    m = re.fullmatch(r"tiny_imagenet-(\d+)", name)
    if m:
        folder = root / "tiny_imagenet"
        return [folder / "train_images.npy", tiny_imagenet_labels_path(folder),
                folder / f"{TINY_IMAGENET_SPLITS}_split" / f"split_{int(m.group(1))}.npz"]
    folder = root / name
    files = [folder / f"{s}_{k}.npy" for s in ("train", "test") for k in ("images", "labels")]
    return files + ([folder / COMPLETE_MARKER] if GENERATED_TASK.match(name) else [])


def require_task_files(cfg, names, skip_generated: bool = False) -> None:
    """Fail at once, before any heavy work, when a task's data file is missing: one line naming the
    first missing file and how to get it."""
    for name in names:
        if skip_generated and GENERATED_TASK.match(name):
            continue
        if name == "tiny_imagenet":
            load_task(name, cfg)   # raises the "needs a split number" error
        for f in task_files(name, cfg.data.root):
            if not f.is_file():
                raise DataError(f"dataset file {f} for task '{name}' does not exist; {_hint(name)}")


def load_npy(path: Path, hint: str = "", mmap: bool = True) -> np.ndarray:
    """``np.load`` with memory mapping; a missing, truncated or non-numpy file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist; {hint or 'check data.root'}")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if not isinstance(arr, np.ndarray):   # an .npz archive saved under a .npy name
            arr.close()
            raise ValueError("it is an .npz archive, not a single array")
        return arr
    except ValueError as e:
        # np.memmap cannot map a zero-length array; such a file is read normally (and then
        # rejected as empty by validate_images/validate_labels).
        if mmap and "empty" in str(e).lower():
            return load_npy(path, hint, mmap=False)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    except (OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(f"dataset file {path} is truncated or not a valid .npy array ({reason}); "
                    f"delete it and re-create or re-download it")


def validate_images(images: np.ndarray, path: Path | str) -> np.ndarray:
    """uint8 N x H x W x 3 (returned as is) or greyscale N x H x W / N x H x W x 1 (returned as an
    RGB broadcast view that stays memory-mapped). Anything else is a DataError naming ``path``."""
    if images.dtype != np.uint8:
        raise DataError(f"dataset file {path} holds {images.dtype} images; expected uint8 (0..255) "
                        f"N x H x W x 3 arrays")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3:
        # Greyscale -> RGB (QuickDraw, docs/method.md#benchmark) without copying: stride 0 on the channel axis.
        images = np.broadcast_to(images[..., None], images.shape + (3,))
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"dataset file {path} has image array shape {tuple(images.shape)}; expected "
                        f"N x H x W x 3 (RGB) or N x H x W (greyscale)")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"dataset file {path} holds no images (shape {tuple(images.shape)})")
    return images


def validate_labels(labels: np.ndarray, path: Path | str, num_classes: Optional[int] = None) -> np.ndarray:
    """Integer 1-D labels in ``[0, num_classes)``, returned as an in-memory int64 array."""
    if labels.dtype.kind not in "iu":
        raise DataError(f"dataset file {path} holds {labels.dtype} labels; expected integer class ids")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"dataset file {path} has label array shape {tuple(labels.shape)}; expected one "
                        f"label per image (shape N)")
    if labels.shape[0] == 0:
        raise DataError(f"dataset file {path} holds no labels")
    labels = np.array(labels, dtype=np.int64)   # small: copied into memory, writable
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise DataError(f"dataset file {path} has labels in [{lo}, {hi}], expected {bound}; the file is "
                        f"corrupt or belongs to another dataset")
    return labels


def validate_arrays(images: np.ndarray, labels: np.ndarray, image_path: Path | str, label_path: Path | str,
                    num_classes: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Check one split (images + labels) and return ``(rgb_images, int64_labels)``."""
    images = validate_images(images, image_path)
    labels = validate_labels(labels, label_path, num_classes)
    if len(images) != len(labels):
        raise DataError(f"dataset file {label_path} has {len(labels)} labels but {image_path} has "
                        f"{len(images)} images; one of them is truncated or from another dataset")
    return images, labels


def _read_split(folder: Path, split: str, name: str, num_classes: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    ip, lp = folder / f"{split}_images.npy", folder / f"{split}_labels.npy"
    hint = _hint(name)
    images, labels = load_npy(ip, hint), load_npy(lp, hint)
    return validate_arrays(images, labels, ip, lp, num_classes)


# --------------------------------------------------------------------------------------------- #
# the layouts
# --------------------------------------------------------------------------------------------- #

def tiny_imagenet_labels_path(folder: Path) -> Path:
    # The authors' downloader writes labels/train_labels.npy; their dataset class reads
    # tiny_imagenet/train_labels.npy. Accept both, preferring the downloader's location.
    for p in (folder / "labels" / "train_labels.npy", folder / "train_labels.npy"):
        if p.is_file():
            return p
    return folder / "labels" / "train_labels.npy"


def read_split_file(path: Path, n_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``split_K.npz`` -> ``(label_list, idx_train, idx_valid)`` as int64, checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} does not exist; download the authors' splits or generate them "
                        f"with `python main.py make-splits`")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("label_list", "idx_train", "idx_valid") if k not in z.files]
            if missing:
                raise DataError(f"split file {path} lacks {', '.join(missing)}; expected label_list, idx_train "
                                f"and idx_valid (re-generate it with `python main.py make-splits`)")
            arrays = [np.asarray(z[k]) for k in ("label_list", "idx_train", "idx_valid")]
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        raise DataError(f"split file {path} is truncated or not a valid .npz ({type(e).__name__}); delete it "
                        f"and re-download or re-generate it") from None
    out = []
    for key, a in zip(("label_list", "idx_train", "idx_valid"), arrays):
        if a.dtype.kind not in "iu" or a.ndim != 1 or a.size == 0:
            raise DataError(f"split file {path} has {key} of dtype {a.dtype} and shape {a.shape}; expected a "
                            f"non-empty 1-D integer array")
        out.append(a.astype(np.int64))
    label_list, idx_train, idx_valid = out
    if len(np.unique(label_list)) != len(label_list):
        raise DataError(f"split file {path} lists a class twice in label_list")
    for key, idx in (("idx_train", idx_train), ("idx_valid", idx_valid)):
        if idx.min() < 0 or idx.max() >= n_images:
            raise DataError(f"split file {path} has {key} entries outside [0, {n_images}) (the train images); "
                            f"it belongs to another copy of Tiny ImageNet")
    return label_list, idx_train, idx_valid


def _take_sorted(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``images[idx]`` reading a memory-mapped file in ascending order (sequential I/O)."""
    order = np.argsort(idx, kind="stable")
    out = np.empty((len(idx),) + tuple(images.shape[1:]), dtype=images.dtype)
    out[order] = images[idx[order]]
    return out


def _relabel(labels: np.ndarray, label_list: np.ndarray, split_path: Path, key: str) -> np.ndarray:
    """y -> label_list.index(y), as the authors' target_transform does."""
    order = np.argsort(label_list)
    pos = np.searchsorted(label_list, labels, sorter=order)
    pos = np.clip(pos, 0, len(label_list) - 1)
    found = label_list[order[pos]] == labels
    if not found.all():
        bad = int(labels[~found][0])
        raise DataError(f"split file {split_path}: {key} selects an image of class {bad}, which is not in its "
                        f"label_list; the split belongs to another copy of Tiny ImageNet")
    return order[pos].astype(np.int64)


def load_tiny_imagenet(root: Path, split: int) -> TaskData:
    """One of the 10 Tiny ImageNet class subsets (docs/method.md#benchmark), relabelled to ``0..len(label_list)-1``."""
    folder = Path(root) / "tiny_imagenet"
    hint = _hint("tiny_imagenet")
    ip, lp = folder / "train_images.npy", tiny_imagenet_labels_path(folder)
    images, labels = validate_arrays(load_npy(ip, hint), load_npy(lp, hint), ip, lp, TINY_IMAGENET_CLASSES)
    sp = folder / f"{TINY_IMAGENET_SPLITS}_split" / f"split_{split}.npz"
    label_list, idx_train, idx_valid = read_split_file(sp, len(images))
    return TaskData(
        name=f"tiny_imagenet-{split}",
        train_images=_take_sorted(images, idx_train),
        train_labels=_relabel(labels[idx_train], label_list, sp, "idx_train"),
        test_images=_take_sorted(images, idx_valid),
        test_labels=_relabel(labels[idx_valid], label_list, sp, "idx_valid"),
        num_classes=len(label_list),
    )


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class, in file order (the authors'
    QuickDraw cut: ``argwhere(labels == c)[:20]`` for every class c)."""
    order = np.argsort(labels, kind="stable")          # by class, file order kept within a class
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(len(labels)) - starts              # position of each image within its class
    return np.sort(order[rank < per_class])


def _read_meta(folder: Path) -> dict:
    p = folder / "meta.json"
    if not p.is_file():
        return {}
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"dataset file {p} is not valid JSON; delete it (num_classes then defaults to "
                        f"max label + 1) or fix it") from None
    if not isinstance(meta, dict) or ("num_classes" in meta and (
            not isinstance(meta["num_classes"], int) or meta["num_classes"] < 1)):
        raise DataError(f"dataset file {p} must be a JSON object whose num_classes is a positive integer")
    return meta


def _shown(values) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


def check_label_sets(train_y: np.ndarray, test_y: np.ndarray, train_path: Path, test_path: Path,
                     num_classes: Optional[int]) -> None:
    """Train and test must use the same classes; without a declared ``num_classes`` (inferred as max label
    + 1) every class id below the largest must occur. A stray label (99 in an 8-class task) would otherwise
    silently widen the classifier."""
    tr, te = set(np.unique(train_y).tolist()), set(np.unique(test_y).tolist())
    for path, extra, other in ((train_path, tr - te, test_path), (test_path, te - tr, train_path)):
        if extra:
            raise DataError(f"dataset file {path} has labels {_shown(sorted(extra))} that never occur in {other}; "
                            f"train and test must use the same classes: fix the labels")
    if num_classes is not None:
        return
    absent = sorted(set(range(max(tr) + 1)) - tr)
    if absent:
        raise DataError(f"dataset file {train_path} has labels up to {max(tr)} but none of {_shown(absent)}; class "
                        f"ids must be 0..K-1 without gaps (or declare num_classes in the folder's meta.json)")


def load_numpy_task(root: Path, name: str, num_classes: Optional[int] = None,
                    train_per_class: Optional[int] = None) -> TaskData:
    """The generic layout ``root/<name>/{train,test}_{images,labels}.npy``."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder} for task '{name}' does not exist; {_hint(name)}")
    if GENERATED_TASK.match(name) and not (folder / COMPLETE_MARKER).is_file():
        raise DataError(f"generated task folder {folder} is incomplete (no {COMPLETE_MARKER} marker; an "
                        f"interrupted generation?); {_hint(name)}")
    if num_classes is None:
        num_classes = _read_meta(folder).get("num_classes")
    train_x, train_y = _read_split(folder, "train", name, num_classes)
    test_x, test_y = _read_split(folder, "test", name, num_classes)
    check_label_sets(train_y, test_y, folder / "train_labels.npy", folder / "test_labels.npy", num_classes)
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    if train_per_class is not None:
        keep = first_per_class(train_y, train_per_class)
        if len(keep) < len(train_y):
            train_x, train_y = _take_sorted(train_x, keep), train_y[keep]
    return TaskData(name, train_x, train_y, test_x, test_y, int(num_classes))


def load_task(name: str, cfg) -> TaskData:
    """Load a task by name from ``cfg.data.root`` (see the module docstring for the layouts)."""
    root = Path(cfg.data.root)
    m = re.fullmatch(r"tiny_imagenet-(\d+)", name)
    if m:
        return load_tiny_imagenet(root, int(m.group(1)))
    if name == "tiny_imagenet":
        raise DataError("task 'tiny_imagenet' needs a split number: tiny_imagenet-0 ... tiny_imagenet-9")
    if name == "quickdraw":
        return load_numpy_task(root, name, KNOWN_NUM_CLASSES[name], cfg.data.quickdraw_train_per_class)
    return load_numpy_task(root, name, KNOWN_NUM_CLASSES.get(name))


# --------------------------------------------------------------------------------------------- #
# writing a task folder (the generated tasks), resumably
# --------------------------------------------------------------------------------------------- #

def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _marker_text(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def is_complete(folder: Path, spec: dict) -> bool:
    """The folder holds a finished task made from ``spec`` (its marker records the spec)."""
    m = Path(folder) / COMPLETE_MARKER
    try:
        return m.is_file() and m.read_text() == _marker_text(spec)
    except OSError:
        return False


def write_task(folder: Path, arrays: dict, spec: dict) -> Path:
    """Write one task (``arrays``: ``meta`` + the four arrays) atomically file by file; the ``.complete``
    marker holding ``spec`` goes last, so a kill or another spec is detected and the task regenerated."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / COMPLETE_MARKER
    if marker.exists():
        marker.unlink()  # stale (another spec): the folder is incomplete until rewritten
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        atomic_write_bytes(folder / f"{key}.npy", _npy_bytes(arrays[key]))
    atomic_write_text(folder / "meta.json", json.dumps(arrays["meta"], indent=2) + "\n")
    atomic_write_text(marker, _marker_text(spec))
    return folder


# --------------------------------------------------------------------------------------------- #
# batches
# --------------------------------------------------------------------------------------------- #

def make_loader(task: TaskData, cfg, split: str, batch_size: int, seed: int = 0, device="cpu",
                train: Optional[bool] = None, drop_last: Optional[bool] = None,
                preload: Optional[bool] = None, channels_last: Optional[bool] = None, heavy: bool = False):
    """A :class:`~dass.data.loader.BatchLoader` over one split of ``task`` with the transforms of docs/method.md#benchmark.

    ``train`` (default: ``split == 'train'``) turns on shuffling, random crop with
    ``cfg.data.crop_padding`` zero padding and horizontal flip; images are resized to
    ``cfg.space.image_size`` and normalised with ``cfg.data.mean/std``. ``drop_last`` defaults to true for a
    training loader and to ``cfg.data.test_drop_last`` for an evaluation one (the authors drop the last
    partial batch there too). ``channels_last`` defaults to ``cfg.train.channels_last`` (NHWC batches,
    which speed convolutions up on CUDA and CPU).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = task.train_images if split == "train" else task.test_images
    labels = task.train_labels if split == "train" else task.test_labels
    dev = torch.device(device)
    if train is None:
        train = split == "train"
    if drop_last is None:
        drop_last = True if train else bool(cfg.data.test_drop_last)
    if not train and drop_last and len(labels) < batch_size:
        raise ConfigError(f"task {task.name} has {len(labels)} {split} images, fewer than one evaluation batch of "
                          f"{batch_size}, and data.test_drop_last=true drops partial batches; lower the batch size "
                          f"or set data.test_drop_last=false")
    if channels_last is None:
        channels_last = bool(cfg.train.channels_last)
    return BatchLoader(images, labels, batch_size=batch_size, image_size=cfg.space.image_size, train=train,
                       seed=seed, device=dev, pad=cfg.data.crop_padding, mean=cfg.data.mean, std=cfg.data.std,
                       drop_last=drop_last, preload=preload, channels_last=channels_last, heavy=heavy)


# --------------------------------------------------------------------------------------------- #
# task names of a config
# --------------------------------------------------------------------------------------------- #

def known_tasks(cfg) -> list[str]:
    seen: list[str] = []
    for name in [*cfg.tasks.meta_train, *cfg.tasks.meta_valid, *cfg.tasks.meta_test]:
        if name not in seen:
            seen.append(name)
    return seen


def task_source(name: str) -> str:
    """The source a task was drawn from: ``fonts``, ``icons``, ``fashion_mnist``, ``synth`` (the generated
    family), ``tiny_imagenet`` (its class splits); any other task is a source of its own (``digits``, ``cub``)."""
    m = SOURCE_TASK.match(name)
    if m:
        return m.group(1)
    if re.fullmatch(r"synth-\d+", name):
        return "synth"
    if re.fullmatch(r"tiny_imagenet-\d+", name):
        return "tiny_imagenet"
    return name


def is_own_dataset(cfg, name: str) -> bool:
    """A dataset no config names but that sits in ``data.root/<name>/`` in the numpy layout (a user's own)."""
    folder = Path(cfg.data.root) / name
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name)) and all(
        (folder / f"{s}_{k}.npy").is_file() for s in ("train", "test") for k in ("images", "labels"))


def check_task(cfg, name: str) -> str:
    """A task name from the config's lists or a user's own dataset under ``data.root``; else a one-line
    ConfigError listing both options."""
    if name in known_tasks(cfg) or is_own_dataset(cfg, name):
        return name
    known = known_tasks(cfg)
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    raise ConfigError(f"unknown task '{name}': it is not in the config's tasks.meta_train/meta_valid/meta_test "
                      f"({shown}) and {Path(cfg.data.root) / name} holds no {{train,test}}_{{images,labels}}.npy; "
                      f"put your dataset there (numpy layout) or add the task to the config")
