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

import dataclasses
import os
import tempfile
from pathlib import Path

from ..data.tasks import TaskData, validate_arrays
from ..errors import CheckpointError
from ..space import SearchSpace
from .checkpoints import freeze, load_model_checkpoint
from .engine import train_teacher
from .runs import BEST, RESULT, dir_status, teacher_dir

READY = ("trained", "released")


def teacher_status(cfg, task: str) -> str:
    return dir_status(teacher_dir(cfg, task))


def is_teacher_ready(cfg, task: str) -> bool:
    return teacher_status(cfg, task) in READY


def load_teacher_file(cfg, path: str | os.PathLike, num_classes: int, device="cpu", require_acc: bool = True):
    """The space's teacher loaded strictly from ``path``, frozen; and its recorded accuracy (percent;
    ``None`` when the file records none and ``require_acc`` is false, e.g. a user's own teacher)."""
    space = SearchSpace.from_config(cfg)
    model, acc = load_model_checkpoint(path, space.teacher(), num_classes, space.stage_strides,
                                       cfg.run.allow_legacy_pickle, device,
                                       require_acc=require_acc)
    return freeze(model), acc


def load_user_teacher(cfg, path: str | os.PathLike, task: TaskData, device="cpu", acc=None):
    """A teacher given by path (a user's own, or a released one elsewhere), frozen, and its test accuracy:
    ``acc`` when given, else measured on ``task``'s test split (with the teacher recipe's batch size, as a
    teacher's accuracy is measured while it trains): the support label must be this split's accuracy."""
    from ..data.tasks import make_loader
    from .engine import evaluate

    teacher, _ = load_teacher_file(cfg, path, task.num_classes, device, require_acc=False)
    if acc is None:
        acc, _ = evaluate(teacher, make_loader(task, cfg, "test", cfg.teacher.batch_size, device=device), device)
    return teacher, float(acc)


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
        train_teacher(data, cfg, out_dir=teacher_dir(cfg, task), device=device, meta_test=meta_test,
                      progress=progress)
    return load_teacher_for(cfg, task, data.num_classes, device)


def probe_teacher_accuracy(cfg, arrays: dict) -> float:
    """The learnability probe of ``make-tasks`` (:mod:`dass.data.generate`): test accuracy (%) of a task's
    teacher trained exactly as build-db will train it (with ``teacher.lr_meta_test`` when the task is a
    meta-test task), on CPU (so the task's content does not depend on the machine's accelerator), into a
    scratch folder. ``arrays`` is an unwritten task (``meta`` and the four arrays)."""
    name = arrays["meta"]["name"]
    # checked and made RGB as load_task would (a source task's greyscale arrays become a broadcast view)
    tr = validate_arrays(arrays["train_images"], arrays["train_labels"], f"{name} train images", f"{name} train labels")
    te = validate_arrays(arrays["test_images"], arrays["test_labels"], f"{name} test images", f"{name} test labels")
    task = TaskData(name, *tr, *te, int(arrays["meta"]["num_classes"]))
    with tempfile.TemporaryDirectory(prefix="dass-probe-") as tmp:
        # run files and the result.csv row stay in the scratch folder: a probe is not a run
        scratch = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=tmp))
        return float(train_teacher(task, scratch, out_dir=Path(tmp) / "teacher", device="cpu",
                                   meta_test=task.name in cfg.tasks.meta_test, progress=False)["final_acc"])
