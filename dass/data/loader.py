"""Batched tensor data pipeline (the training transforms of docs/method.md#benchmark, without a per-image PIL path).

Images stay uint8 NHWC (numpy, possibly memory-mapped) until a batch is drawn; the batch is moved to
the device once and transformed there as a whole: resize (when the stored size differs from the
task's image size), random crop with zero padding, horizontal flip, then ``(x/255 - mean)/std``.
Randomness comes from a CPU ``torch.Generator`` seeded by ``(seed, epoch)``, so an epoch's batches
are identical on every device and after a resume.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F


def to_float(x_uint8_nhwc: torch.Tensor, image_size: int, mean: float = 0.5, std: float = 0.5,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW at ``image_size`` (bilinear resize when needed)."""
    x = x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.sub_(mean).div_(std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def draw_crop_flip(n: int, pad: int, gen: torch.Generator, flip: bool = True):
    """The random draws of :func:`random_crop_flip` for ``n`` images, on the CPU generator ``gen``:
    row and column offsets in ``[0, 2 * pad]`` and the flip flags (None without flipping)."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    do_flip = (torch.rand(n, generator=gen) < 0.5) if flip else None
    return oy, ox, do_flip


def crop_flip(x: torch.Tensor, pad: int, oy: torch.Tensor, ox: torch.Tensor, do_flip: Optional[torch.Tensor] = None,
              fill: float = 0.0) -> torch.Tensor:
    """RandomCrop(size, padding=pad) + RandomHorizontalFlip on NCHW floats with the draws already made
    (offsets and flags on ``x``'s device).

    torchvision pads raw pixels with 0 (black); ``x`` here is already normalised, so the caller
    passes ``fill = (0 - mean) / std``, the normalised value of a black pixel.
    """
    n, _, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), value=fill)
        rows = oy[:, None] + torch.arange(h, device=dev)[None]          # n,h
        cols = ox[:, None] + torch.arange(w, device=dev)[None]          # n,w
        if do_flip is not None:
            cols = torch.where(do_flip[:, None], cols.flip(1), cols)
        idx_n = torch.arange(n, device=dev)[:, None, None]
        # gather -> n,h,w,c then back to n,c,h,w
        x = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    elif do_flip is not None:
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator, flip: bool = True,
                     fill: float = 0.0) -> torch.Tensor:
    """:func:`draw_crop_flip` on ``gen``, then :func:`crop_flip`."""
    draws = draw_crop_flip(x.shape[0], pad, gen, flip)
    return crop_flip(x, pad, *(None if t is None else t.to(x.device) for t in draws), fill=fill)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kx: int = 5, ky: int = 9) -> torch.Tensor:
    """torchvision's ``GaussianBlur(kernel_size=(kx, ky))`` with one ``sigma`` per image (reflect padding)."""
    n, c, h, w = x.shape

    def kernels(k: int) -> torch.Tensor:
        t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=x.device)
        g = torch.exp(-0.5 * (t[None] / sigma[:, None].to(x.device)) ** 2)
        return (g / g.sum(1, keepdim=True)).repeat_interleave(c, 0)      # (n*c, k)

    y = F.pad(x.reshape(1, n * c, h, w), (kx // 2, kx // 2, ky // 2, ky // 2), mode="reflect")
    y = F.conv2d(y, kernels(kx)[:, None, None, :], groups=n * c)
    y = F.conv2d(y, kernels(ky)[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def rotate(x: torch.Tensor, degrees: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """torchvision's ``rotate`` (counter-clockwise, about the centre, nearest, no expansion) per image."""
    a = torch.deg2rad(degrees.to(x.device, torch.float32))
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    # output -> input sampling grid in normalised (x right, y down) coordinates
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False) + fill


def heavy_augment(x: torch.Tensor, gen: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """The authors' optional teacher augmentation (``--aug``) after crop + flip: another horizontal flip
    (their "vertical" flip is a second RandomHorizontalFlip), GaussianBlur((5, 9), sigma in [0.1, 5]) and
    RandomRotation(30..70 degrees); docs/method.md#teachers."""
    n = x.shape[0]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    sigma = 0.1 + 4.9 * torch.rand(n, generator=gen)
    angle = 30.0 + 40.0 * torch.rand(n, generator=gen)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return rotate(gaussian_blur(x, sigma), angle, fill).contiguous()


class BatchLoader:
    """Iterate ``(images, labels)`` batches of one split.

    - ``train=True``: shuffled each epoch (seeded by ``seed`` and :meth:`set_epoch`), random crop
      with ``pad`` and horizontal flip; ``drop_last`` like the authors' loaders.
    - ``train=False``: in order, no augmentation; the last partial batch is kept unless ``drop_last``
      (:func:`dass.data.tasks.make_loader` passes ``data.test_drop_last``).
    - ``preload=True`` copies the whole uint8 array to ``device`` once (the CUDA fast path); such a
      loader draws the epoch's permutation and every batch's crops and flips up front, on the same
      generator in the same order (so the batches are identical), and moves them in one non-blocking
      transfer: a blocking host-to-device copy per step would stall the CUDA pipeline.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, image_size: int,
                 train: bool, seed: int = 0, device: torch.device | str = "cpu", pad: int = 8,
                 mean: float = 0.5, std: float = 0.5, drop_last: Optional[bool] = None,
                 preload: Optional[bool] = None, channels_last: bool = False, heavy: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.device = torch.device(device)
        self.images, self.labels = images, labels
        self.batch_size, self.image_size = int(batch_size), int(image_size)
        self.train, self.seed, self.pad = train, int(seed), int(pad)
        self.mean, self.std = mean, std
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.heavy = bool(heavy and train)      # the authors' heavy augmentation (teachers, opt-in)
        self.epoch = 0
        self._labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        preload = (self.device.type == "cuda") if preload is None else preload
        # The prefetched path draws an epoch's crops up front; the heavy augmentation draws per batch, so
        # the two paths would see different batches: a heavy-augmented loader always streams.
        preload = preload and not self.heavy
        self._images_t = None
        if preload:
            self._images_t = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            self._labels_t = self._labels_t.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return g

    def _take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images_t is not None:
            idx_d = idx.to(self.device)
            return self._images_t.index_select(0, idx_d), self._labels_t.index_select(0, idx_d)
        # sorted fancy indexing reads a memory-mapped file sequentially
        idx_np = idx.numpy()
        order = np.argsort(idx_np, kind="stable")
        xs = np.empty((len(idx_np),) + tuple(self.images.shape[1:]), dtype=np.uint8)
        xs[order] = self.images[idx_np[order]]
        x = torch.from_numpy(xs).to(self.device, non_blocking=True)
        return x, self._labels_t.index_select(0, idx).to(self.device, non_blocking=True)

    @property
    def preloaded(self) -> bool:
        return self._images_t is not None

    def _finish(self, x8: torch.Tensor, draws=None, gen: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 batch -> the model's input: normalise, crop and flip with ``draws`` (train), the heavy
        augmentation from ``gen`` when on, memory format."""
        x = to_float(x8, self.image_size, self.mean, self.std)
        if draws is not None:
            x = crop_flip(x, self.pad, *draws, fill=-self.mean / self.std)
            if self.heavy:
                x = heavy_augment(x, gen, fill=-self.mean / self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._prefetched() if self.preloaded else self._streamed()

    def _streamed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        g = self.generator()
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x8, y = self._take(idx)
            draws = None
            if self.train:
                draws = tuple(t.to(self.device) for t in draw_crop_flip(len(idx), self.pad, g))
            yield self._finish(x8, draws, g), y

    def _prefetched(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs, nb = len(self.labels), self.batch_size, len(self)
        images, labels = self._images_t, self._labels_t
        if not self.train:
            for b in range(nb):
                yield self._finish(images[b * bs:(b + 1) * bs]), labels[b * bs:(b + 1) * bs]
            return
        g = self.generator()
        order = torch.randperm(n, generator=g)
        sizes = [min(bs, n - b * bs) for b in range(nb)]
        draws = [torch.stack([t.long() for t in draw_crop_flip(m, self.pad, g)]) for m in sizes]
        packed = torch.cat([order[:sum(sizes)][None], torch.cat(draws, dim=1)], dim=0)
        if self.device.type == "cuda":
            packed = packed.pin_memory().to(self.device, non_blocking=True)
        else:
            packed = packed.to(self.device)
        start = 0
        for m in sizes:
            idx, oy, ox, fl = packed[:, start:start + m]
            start += m
            yield self._finish(images.index_select(0, idx), (oy, ox, fl.bool())), labels.index_select(0, idx)
