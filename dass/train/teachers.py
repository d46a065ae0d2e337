"""Teachers: the one notion of "ready", the one loader, and training only when nothing usable exists.

A task's teacher lives in ``<run.checkpoint_dir>/teacher/<task>/`` (the authors' ``checkpoint/teacher/<task>``).
Its state is one of:

- ``missing``: no ``model_best.pth.tar`` and no run of ours;
- ``incomplete``: a run of ours stopped part-way (``checkpoint.pth.tar`` without ``result.json``);
- ``trained``: a finished run of ours (``model_best`` + ``result.json``);
- ``released``: ``model_best.pth.tar`` with no run files of ours -- how the authors ship their teachers
  (a dict with ``state_dict`` and ``best_acc``). It is read only: never retrained, never overwritten.

``trained`` and ``released`` are *ready*. :func:`load_teacher_for` is the only way the commands
(train-teacher, kd, build-db, search, demo) read a teacher; :func:`ensure_teacher` trains one only when
the teacher is not ready, so a corrupt or mismatched ready file is an error naming it, never replaced.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError
from .checkpoints import freeze, load_model_checkpoint
from .runs import BEST, CHECKPOINT, RESULT

READY = ("trained", "released")


def teacher_dir(cfg, task: str) -> Path:
    """``<run.checkpoint_dir>/teacher/<task>/``."""
    return Path(cfg.run.checkpoint_dir) / "teacher" / task


def dir_status(d: str | os.PathLike) -> str:
    """``missing``, ``incomplete``, ``trained`` or ``released`` for a teacher directory (module docstring)."""
    d = Path(d)
    ours = (d / CHECKPOINT).is_file() or (d / RESULT).is_file()
    if not (d / BEST).is_file():
        return "incomplete" if ours else "missing"
    if not ours:
        return "released"
    return "trained" if (d / RESULT).is_file() else "incomplete"


def teacher_status(cfg, task: str) -> str:
    return dir_status(teacher_dir(cfg, task))


def is_teacher_ready(cfg, task: str) -> bool:
    return teacher_status(cfg, task) in READY


def check_not_released(out_dir: str | os.PathLike) -> None:
    """Refuse to train into a directory holding a released teacher (docs/method.md#teachers)."""
    if dir_status(out_dir) == "released":
        raise CheckpointError(f"{Path(out_dir) / BEST} is a released teacher (no run files of ours): it is used as "
                              f"is and never retrained or overwritten; to train your own, point "
                              f"run.checkpoint_dir elsewhere")


def load_teacher_file(cfg, path: str | os.PathLike, num_classes: int, device="cpu", require_acc: bool = True):
    """The space's teacher loaded strictly from ``path``, frozen; and its recorded accuracy (percent;
    ``None`` when the file records none and ``require_acc`` is false, e.g. a user's own teacher)."""
    from ..space import SearchSpace

    space = SearchSpace.from_config(cfg)
    model, acc = load_model_checkpoint(path, space.teacher(), num_classes, space.stage_strides,
                                       cfg.run.allow_legacy_pickle, device,
                                       require_acc=require_acc)
    return freeze(model), acc


def load_teacher_for(cfg, task: str, num_classes: int, device="cpu"):
    """The ready teacher of ``task`` (frozen, eval mode) and its test accuracy; a one-line
    :class:`CheckpointError` naming the file when it is missing, unfinished, corrupt or mismatched."""
    d = teacher_dir(cfg, task)
    status = dir_status(d)
    if status == "missing":
        raise CheckpointError(f"teacher checkpoint {d / BEST} does not exist; train it with `python main.py "
                              f"train-teacher --task {task}` (or put the released teacher there)")
    if status == "incomplete":
        raise CheckpointError(f"teacher of {task} in {d} is still training (no {RESULT}); re-run "
                              f"`python main.py train-teacher --task {task}` to finish it")
    return load_teacher_file(cfg, d / BEST, num_classes, device)


def ensure_teacher(cfg, task: str, data, device="cpu", meta_test: bool = False, progress: bool = True):
    """:func:`load_teacher_for`, training (or resuming) the teacher first only when it is not ready."""
    if not is_teacher_ready(cfg, task):
        from .engine import train_teacher

        train_teacher(data, cfg, out_dir=teacher_dir(cfg, task), device=device, meta_test=meta_test,
                      progress=progress)
    return load_teacher_for(cfg, task, data.num_classes, device)
