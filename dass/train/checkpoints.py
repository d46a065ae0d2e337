"""Model checkpoints: the one loader (strict, identity-checked) and the frozen-teacher helper.

A checkpoint is a dict with the authors' key ``state_dict`` and ``best_acc`` (ours also carry ``arch``
and ``num_classes``, checked on load: docs/method.md#file-formats).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import ArchError, CheckpointError
from ..io import safe_torch_load
from ..nets import ResNet, extract_state_dict, load_state_dict_strict
from ..space import Arch


def _as_float(v, path, key) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() < 1:
            raise CheckpointError(f"{path}: key '{key}' is an empty tensor; expected an accuracy in percent")
        v = v.flatten()[0].item()
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    raise CheckpointError(f"{path}: key '{key}' = {v!r} is not a number; expected an accuracy in percent")


def checkpoint_accuracy(obj, path) -> float:
    """The best test accuracy (percent) stored in a checkpoint dict: key ``best_acc`` (ours and the
    authors' train_teacher.py, where it may be a 1-element tensor)."""
    if isinstance(obj, dict) and "best_acc" in obj:
        return _as_float(obj["best_acc"], path, "best_acc")
    raise CheckpointError(f"{path}: no 'best_acc' entry, so the teacher's test accuracy is unknown; "
                          f"re-train it with `main.py train-teacher` (which records it)")


def check_identity(obj: dict, path, arch: Arch, num_classes: int) -> None:
    """Refuse a checkpoint whose recorded architecture or class count differs (one line, naming it)."""
    if "arch" in obj:
        try:
            got = Arch.from_dict(obj["arch"])
        except (KeyError, TypeError, ArchError):
            raise CheckpointError(f"{path}: its 'arch' entry is malformed; delete the file and re-train") from None
        if got != arch:
            raise CheckpointError(f"{path} holds architecture {got}, not {arch}; it belongs to another "
                                  f"student/space: use the matching config or delete it")
    if "num_classes" in obj and int(obj["num_classes"]) != int(num_classes):
        raise CheckpointError(f"{path} was trained for {int(obj['num_classes'])} classes but the task has "
                              f"{num_classes}; it belongs to another task: delete it or fix the task")


def load_model_checkpoint(path, arch: Arch, num_classes: int, strides: Sequence[int] = (1, 2, 2, 2),
                          allow_pickle: bool = False, device="cpu", what: str = "teacher checkpoint",
                          require_acc: bool = True) -> tuple[ResNet, Optional[float]]:
    """Build ``ResNet(arch)`` and load ``path`` strictly; return ``(model, best_acc_percent)``
    (``None`` for a file without ``best_acc`` when not ``require_acc``)."""
    obj = safe_torch_load(path, allow_pickle=allow_pickle, what=what)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a model checkpoint (expected a dict with key 'state_dict')")
    check_identity(obj, path, arch, num_classes)
    acc = checkpoint_accuracy(obj, path) if require_acc or "best_acc" in obj else None
    model = ResNet(arch, num_classes, strides)
    load_state_dict_strict(model, extract_state_dict(obj, str(path)), str(path))
    return model.to(device), acc


def freeze(model: nn.Module) -> nn.Module:
    """Teacher in eval mode with gradients off (docs/method.md#kd: the teacher is frozen)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
