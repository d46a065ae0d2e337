"""The predictor inputs of a task that the database builder and the search both compute.

A task's teacher support record (docs/method.md#meta-learning: the teacher seen as a student, labelled
with its own test accuracy) and its dataset features (the D input) are made the same way for a database
task, for a search pool written by ``build-db`` and for a pool embedded on the fly; this module is that
one way, so the two callers cannot drift apart.
"""
from __future__ import annotations

import torch

from ..data.features import dataset_features
from ..embed import functional_map
from ..seeds import stable_seed
from ..space import SearchSpace
from .records import TeacherRecord


def teacher_record(cfg, teacher, acc: float, noise: torch.Tensor) -> TeacherRecord:
    """The support point: the teacher's own encoding and functional map, and its test accuracy (percent)."""
    space = SearchSpace.from_config(cfg)
    arch = space.teacher()
    return TeacherRecord(arch=arch, arch_enc=space.encode(arch),
                         fmap=functional_map(teacher, noise, cfg.embed.stage), acc=float(acc))


def task_dataset_features(cfg, data) -> torch.Tensor:
    """The D input's image features of a task (the images drawn with the database's sample seed)."""
    p = cfg.predictor
    return dataset_features(data.train_images, data.train_labels, data.num_classes, p.dataset_samples_per_class,
                            seed=stable_seed("dataset", cfg.db.sample_seed), feature_dim=p.dataset_feature_dim)
