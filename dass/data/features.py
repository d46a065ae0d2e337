"""Download-free image features of a task: the D input's view of a dataset (docs/method.md#predictor).

MetaD2A encodes images with an ImageNet-pretrained ResNet18 (512-d), which cannot be downloaded here. We use a fixed, download-free extractor instead:
a *seeded random-weight* conv net (3 conv3x3 layers, Kaiming-normal weights from a fixed seed, ReLU,
strides 1/2/2) on images resized to 32x32 and normalised like the task's training inputs; each image
gives the per-channel spatial mean and standard deviation of the last map (random conv features are a
well-known, surprisingly informative image descriptor), followed by a fixed Gaussian projection to
``feature_dim``. The weights depend only on the seed, so features are identical on every machine and
no file has to be shipped.

They belong to the data layer because the database builder computes and stores them for every task
(the predictor only reads them), and the search computes them for a pool embedded on the fly.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError

FEATURE_SIZE = 32                 # images are resized to this side before the random conv net
_CONV_WIDTHS = (32, 64, 128)
_CONV_STRIDES = (1, 2, 2)


def _random_extractor(seed: int, feature_dim: int):
    """Fixed conv weights and output projection drawn from ``seed`` (CPU generator: same everywhere)."""
    g = torch.Generator().manual_seed(int(seed))
    weights, cin = [], 3
    for w in _CONV_WIDTHS:
        weights.append(torch.randn(w, cin, 3, 3, generator=g) * math.sqrt(2.0 / (cin * 9)))
        cin = w
    proj = torch.randn(2 * cin, feature_dim, generator=g) / math.sqrt(2 * cin)
    return weights, proj


@torch.no_grad()
def image_features(images_uint8_nhwc, seed: int = 0, feature_dim: int = 512, mean: float = 0.5,
                   std: float = 0.5, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """``N x H x W x C`` uint8 images (C = 1 or 3) -> ``N x feature_dim`` float32 features."""
    x = torch.as_tensor(np.asarray(images_uint8_nhwc))
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    if x.dim() != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"images must be N x H x W x C uint8 with C in (1, 3), got shape {tuple(x.shape)}")
    weights, proj = _random_extractor(seed, feature_dim)
    weights = [w.to(device) for w in weights]
    proj = proj.to(device)
    out = []
    for i in range(0, x.shape[0], batch_size):
        b = x[i:i + batch_size].to(device).permute(0, 3, 1, 2).float().div(255.0)
        if b.shape[1] == 1:
            b = b.expand(-1, 3, -1, -1)
        b = (b - mean) / std
        if b.shape[-1] != FEATURE_SIZE or b.shape[-2] != FEATURE_SIZE:
            b = F.interpolate(b, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", align_corners=False,
                              antialias=b.shape[-1] > FEATURE_SIZE)
        for w, s in zip(weights, _CONV_STRIDES):
            b = F.relu(F.conv2d(b, w, stride=s, padding=1))
        flat = b.flatten(2)
        desc = torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)
        out.append((desc @ proj).cpu())
    return torch.cat(out) if out else torch.zeros(0, feature_dim)


def dataset_features(images_uint8_nhwc, labels, num_classes: int, samples_per_class: int = 20, seed: int = 0,
                     feature_dim: int = 512, device: str | torch.device = "cpu",
                     extractor_seed: Optional[int] = None) -> torch.Tensor:
    """A fixed sample of each class's images -> ``classes x samples x feature_dim`` (the D input).

    ``seed`` picks which images represent each class (without replacement when the class has enough
    images, with replacement otherwise, so the tensor shape is fixed); ``extractor_seed`` (default 0,
    independent of ``seed`` so every task is encoded by the *same* extractor) draws the conv weights.
    A class without any image is an error: the dataset does not match ``num_classes``.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    if np.asarray(images_uint8_nhwc).shape[0] != n:
        raise DataError(f"dataset features: {np.asarray(images_uint8_nhwc).shape[0]} images but {n} labels")
    if samples_per_class < 1:
        raise ConfigError("config key 'predictor.dataset_samples_per_class' must be positive")
    rng = np.random.default_rng(int(seed))
    picks = []
    for c in range(int(num_classes)):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            raise DataError(f"dataset features: class {c} has no image (num_classes={num_classes}); "
                            f"check the labels of the task's train split")
        picks.append(rng.choice(idx, size=samples_per_class, replace=idx.size < samples_per_class))
    order = np.concatenate(picks)
    feats = image_features(np.asarray(images_uint8_nhwc)[order], seed=0 if extractor_seed is None else extractor_seed,
                           feature_dim=feature_dim, device=device)
    return feats.view(int(num_classes), samples_per_class, feature_dim)
