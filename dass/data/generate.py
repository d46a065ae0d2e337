"""``make-tasks``: every generated task of a configuration, written resumably (docs/method.md#benchmark).

The generated tasks are the family ``synth-0 .. synth-{N-1}`` (:mod:`dass.data.synthetic`) and
scikit-learn's ``digits``. Each is written by :func:`dass.data.tasks.write_task` with a ``.complete``
marker holding its *spec* (everything its content depends on); a folder whose marker matches is
skipped, any other is regenerated.

Learnable tasks only (family v3): a task is redrawn until its teacher, trained exactly as ``build-db``
will train it, reaches ``data.synthetic_min_x_chance`` times chance. Training a teacher sits above the
data layer, so the caller passes that training in as a *probe* (``probe(cfg, arrays) -> accuracy in
percent``; the CLI and the demo pass :func:`dass.train.teachers.probe_teacher_accuracy`).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from ..errors import ConfigError
from . import synthetic as syn
from .tasks import is_complete, write_task

Probe = Callable[[object, dict], float]
MAX_ATTEMPTS = 8


def generated_task_names(cfg) -> list[str]:
    return [f"synth-{k}" for k in range(cfg.data.synthetic_num_tasks)] + ["digits"]


def probe_spec(cfg, name: str) -> dict:
    """Everything the learnability probe's outcome depends on (part of a probed task's marker: a change
    regenerates the task)."""
    return {"min_x_chance": cfg.data.synthetic_min_x_chance, "teacher": dataclasses.asdict(cfg.teacher),
            "meta_test": name in cfg.tasks.meta_test,
            "space": dataclasses.asdict(cfg.space), "channels_last": cfg.train.channels_last,
            "num_threads": cfg.train.num_threads, "crop_padding": cfg.data.crop_padding,
            "mean": cfg.data.mean, "std": cfg.data.std}


def task_spec(cfg, name: str) -> dict:
    """The marker of a generated task: its generator, seed, size and recipe settings."""
    d, size = cfg.data, cfg.space.image_size
    spec = {"generator": syn.GENERATOR_VERSION, "task": name, "seed": d.synthetic_seed, "image_size": size}
    if name == "digits":
        return {**spec, "test_fraction": d.digits_test_fraction}
    spec.update(train_per_class=d.synthetic_train_per_class, test_per_class=d.synthetic_test_per_class)
    if d.synthetic_family != "v1":   # v1 markers stay as they were: existing folders remain valid
        spec.update(family=d.synthetic_family, min_test_images=d.synthetic_min_test_images)
    if d.synthetic_family == "v3":
        spec.update(probe=probe_spec(cfg, name))
    return spec


def redraw_until_learnable(cfg, name: str, attempt: Callable[[int], dict], probe: Probe, bar_key: str) -> dict:
    """The first of ``attempt(0), attempt(1), ...`` whose teacher reaches ``data.synthetic_min_x_chance``
    times chance; the probe's accuracy and the rejected attempts go into the task's ``meta``."""
    need = cfg.data.synthetic_min_x_chance
    seen = []
    for k in range(MAX_ATTEMPTS):
        arrays = attempt(k)
        acc = float(probe(cfg, arrays))
        x_chance = acc * arrays["meta"]["num_classes"] / 100.0
        seen.append(round(x_chance, 2))
        if x_chance >= need:
            arrays["meta"]["probe"] = {"teacher_acc": acc, "x_chance": x_chance, "rejected_x_chance": seen[:-1]}
            return arrays
    raise ConfigError(f"{name}: no learnable {bar_key} in {MAX_ATTEMPTS} attempts (teacher at {seen} x chance, "
                      f"{need} needed); lower 'data.synthetic_min_x_chance' or train the teacher longer "
                      "('teacher.epochs')")


def make_task_arrays(cfg, name: str, probe: Optional[Probe] = None) -> dict:
    """The arrays and meta of one generated task (nothing written)."""
    d, size = cfg.data, cfg.space.image_size
    if name == "digits":
        return syn.make_digits(size, d.synthetic_seed, d.digits_test_fraction)
    index = int(name.split("-")[1])
    if d.synthetic_family != "v3":
        return syn.make_task(d.synthetic_seed, index, size, d.synthetic_train_per_class, d.synthetic_test_per_class,
                             d.synthetic_family, d.synthetic_min_test_images)
    if probe is None:
        raise ConfigError(f"{name}: family v3 keeps only learnable tasks, which needs a probe that trains the "
                          "task's teacher; pass probe=dass.train.teachers.probe_teacher_accuracy")

    def attempt(k: int) -> dict:
        return syn.make_task(d.synthetic_seed, index, size, d.synthetic_train_per_class, d.synthetic_test_per_class,
                             "v3", d.synthetic_min_test_images, k)

    return redraw_until_learnable(cfg, name, attempt, probe, "recipe")


def generate_tasks(cfg, out_root: Optional[str | Path] = None, progress: bool = True, force: bool = False,
                   probe: Optional[Probe] = None) -> list[str]:
    """Write every generated task under ``out_root`` (default ``cfg.data.root``) at ``cfg.space.image_size``;
    tasks already complete with the same spec are skipped (``force`` regenerates them). Returns their names."""
    syn.check_config(cfg)
    root = Path(out_root if out_root is not None else cfg.data.root)
    names = generated_task_names(cfg)
    for name in tqdm(names, desc="make-tasks", unit="task", disable=not progress or not sys.stderr.isatty()):
        spec = task_spec(cfg, name)
        if force or not is_complete(root / name, spec):
            write_task(root / name, make_task_arrays(cfg, name, probe), spec)
    return names


def describe_tasks(cfg, root: Optional[str | Path] = None) -> list[dict]:
    """One summary row per generated task (for the make-tasks printout and the README)."""
    root = Path(root if root is not None else cfg.data.root)
    rows = []
    for name in generated_task_names(cfg):
        meta = json.loads((root / name / "meta.json").read_text())
        row = {"task": name, "classes": meta["num_classes"]}
        rec = meta.get("recipe")
        if rec:
            main_cue = max(rec["cue_weights"], key=rec["cue_weights"].get)
            row.update(cue=main_cue, separation=round(rec["separation"], 2), variability=round(rec["variability"], 2))
        if "probe" in meta:   # v3: its training images per class and its teacher's accuracy over chance
            row.update(train_per_class=meta["train_per_class"], teacher_x_chance=round(meta["probe"]["x_chance"], 2),
                       attempts=meta.get("attempt", 0) + 1)
        rows.append(row)
    return rows
