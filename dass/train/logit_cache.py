"""Teacher-logit cache: one frozen teacher forward per batch, shared by every student of a task.

Why (docs/method.md#kd): in a KD step the frozen teacher's forward costs as much as the student's forward
and backward together (ResNet42: 1.46 GMACs per 64x64 image against 0.5 GMACs for a mid-size student,
run three times). The database builder distils tens of students per task with the same KD seed
(``db.kd_seed``, docs/method.md#kd) and :class:`dass.data.loader.BatchLoader` draws an epoch's order, crops and flips
from ``(seed, epoch)`` alone, so every one of those students sees exactly the same augmented batches
and needs exactly the same teacher logits. The first student computes them and stores them here; the
others read them. Results are bit-identical to recomputing (the stored tensors are the computed ones);
``tests/test_logit_cache.py`` checks that.

A stream is identified by :func:`stream_key`: the teacher's weights, the task's images and labels, the
loader settings (image size, padding, normalisation, batch size), the seed, the device type and the
autocast dtype. The cache lives in memory (in the device's memory on a GPU) and holds at most
``max_bytes``; a stream that would not fit is not cached at all (partial caching would still pay the
full teacher cost on the missing epochs). Paper scale: 18,000 training images of a Tiny ImageNet split
x 40 classes x 50 epochs x 4 bytes = 144 MB per task (QuickDraw, 6,900 images x 345 classes: 476 MB).
Configured by ``kd.logit_cache_mb`` (0 switches it off).
"""
from __future__ import annotations

import hashlib
import sys
from typing import Optional

import numpy as np
import torch

__all__ = ["TeacherLogitCache", "stream_key", "stream_bytes"]


def _hash_array(h, a) -> None:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw bits
            a = a.view(torch.int16)
        a = a.contiguous().numpy()
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))


def stream_key(teacher: torch.nn.Module, task, cfg, batch_size: int, seed: int, device: torch.device,
               dtype: Optional[torch.dtype], channels_last: bool) -> str:
    """A digest of everything that determines the teacher logits of a KD run's batches."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        _hash_array(h, t)
    for a in (task.train_images, task.train_labels, task.test_images, task.test_labels):
        _hash_array(h, a)
    h.update(repr((task.name, int(task.num_classes), int(cfg.space.image_size), int(cfg.data.crop_padding),
                   float(cfg.data.mean), float(cfg.data.std), int(batch_size), int(seed), torch.device(device).type,
                   str(dtype), bool(channels_last))).encode())
    return h.hexdigest()


def stream_bytes(epochs: int, train_rows: int, test_rows: int, num_classes: int) -> int:
    """Bytes the float32 logits of one stream take: every epoch's training batches plus the test split."""
    return 4 * num_classes * (epochs * train_rows + test_rows)


class TeacherLogitCache:
    """In-memory store of teacher logits keyed by ``(stream, epoch, batch)``; ``epoch`` 0 is the test split.

    Pass one instance to every :func:`dass.train.engine.distill` call that should share it
    (``distill(..., logit_cache=cache)``).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._store: dict[tuple[str, int, int], torch.Tensor] = {}
        self._streams: dict[str, int] = {}   # stream key -> bytes reserved
        self._refused: set[str] = set()       # streams that did not fit (reported once)
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_config(cls, cfg) -> Optional["TeacherLogitCache"]:
        """The cache ``kd.logit_cache_mb`` asks for, or None when it is 0."""
        mb = int(cfg.kd.logit_cache_mb)
        return cls(mb * 2 ** 20) if mb > 0 else None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def admit(self, key: str, nbytes: int, what: str = "") -> bool:
        """Reserve room for a stream; False (and one line on stderr) when it does not fit."""
        if key in self._streams:
            return True
        used = sum(self._streams.values())
        if used + nbytes > self.max_bytes:
            if key in self._refused:
                return False
            self._refused.add(key)
            print(f"[kd] teacher-logit cache: {what or 'this run'} needs {nbytes / 2 ** 20:.1f} MB, "
                  f"{(self.max_bytes - used) / 2 ** 20:.1f} MB left of kd.logit_cache_mb="
                  f"{self.max_bytes / 2 ** 20:g}; the teacher runs on every batch (raise the setting to cache)",
                  file=sys.stderr, flush=True)
            return False
        self._streams[key] = int(nbytes)
        return True

    def get(self, key: str, epoch: int, batch: int) -> Optional[torch.Tensor]:
        t = self._store.get((key, epoch, batch))
        if t is None:
            self.misses += 1
        else:
            self.hits += 1
        return t

    def put(self, key: str, epoch: int, batch: int, logits: torch.Tensor) -> None:
        if key in self._streams:
            self._store[(key, epoch, batch)] = logits.detach()

    def clear(self) -> None:
        self._store.clear()
        self._streams.clear()
        self._refused.clear()
