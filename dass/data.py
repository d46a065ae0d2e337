"""Datasets in the authors' numpy layout (SPEC 7, 10) behind one in-memory type.

Every task -- a Tiny ImageNet split, an unseen dataset, a generated task of the embedded default --
is a :class:`TaskData`: uint8 NHWC image arrays (memory-mapped where possible) and int64 labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
