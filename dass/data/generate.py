"""``make-tasks``: every generated task of a configuration, written resumably (docs/method.md#benchmark).

The generated tasks are the family ``synth-0 .. synth-{N-1}`` (:mod:`dass.data.synthetic`),
scikit-learn's ``digits``, and the class-subset tasks of the real image sources that the config's task
lists name (``fonts-<k>``, ``icons-<k>``, ``fashion_mnist-<k>``: :mod:`dass.data.sources`, settings in
``data.<source>``). Each is written by :func:`dass.data.tasks.write_task` with a ``.complete`` marker
holding its *spec* (everything its content depends on); a folder whose marker matches is skipped, any
other is regenerated.

Learnable tasks only (family v3; a source with ``data.<source>.min_x_chance`` > 0): a task is redrawn
until its teacher, trained exactly as ``build-db`` will train it, reaches that many times chance.
Training a teacher sits above the data layer, so the caller passes that training in as a *probe*
(``probe(cfg, arrays) -> accuracy in percent``; the CLI and the demo pass
:func:`dass.train.teachers.probe_teacher_accuracy`).
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
from .tasks import SOURCE_TASK, is_complete, known_tasks, write_task

SOURCES_VERSION = 1     # bump to regenerate every source task (a change of how subsets are drawn)

Probe = Callable[[object, dict], float]
MAX_ATTEMPTS = 8


def generated_task_names(cfg) -> list[str]:
    """``synth-0 .. synth-{N-1}``, ``digits``, then the source tasks the config's task lists name."""
    return ([f"synth-{k}" for k in range(cfg.data.synthetic_num_tasks)] + ["digits"]
            + [t for t in known_tasks(cfg) if SOURCE_TASK.match(t)])


def probe_spec(cfg, name: str, min_x_chance: Optional[float] = None) -> dict:
    """Everything the learnability probe's outcome depends on (part of a probed task's marker: a change
    regenerates the task)."""
    need = cfg.data.synthetic_min_x_chance if min_x_chance is None else min_x_chance
    return {"min_x_chance": need, "teacher": dataclasses.asdict(cfg.teacher),
            "meta_test": name in cfg.tasks.meta_test,
            "space": dataclasses.asdict(cfg.space), "channels_last": cfg.train.channels_last,
            "num_threads": cfg.train.num_threads, "crop_padding": cfg.data.crop_padding,
            "mean": cfg.data.mean, "std": cfg.data.std}


def source_settings(cfg, name: str):
    """``(source, its data.<source> section, the reader's parameters)`` of a source task."""
    source = SOURCE_TASK.match(name).group(1)
    sc = getattr(cfg.data, source)
    params = {"fonts": {"max_per_family": sc.max_per_group}, "icons": {"min_themes": sc.min_groups}}
    return source, sc, params.get(source, {})


def source_pool(cfg, source: str, progress: bool = False):
    """The cached pool of ``source`` at the space's image size (dass.data.sources.cache)."""
    from .sources.cache import pool_for
    from .sources.registry import default_root

    sc = getattr(cfg.data, source)
    root = Path(sc.root) if sc.root else default_root(source, cfg.data.root)
    params = source_settings(cfg, f"{source}-0")[2]
    return pool_for(source, root, cfg.space.image_size, Path(cfg.data.root) / "_pools", progress=progress, **params)


def task_spec(cfg, name: str, pool=None) -> dict:
    """The marker of a generated task: its generator, seed, size and recipe settings (a source task: its
    source's settings and the digest of the pool it is drawn from)."""
    d, size = cfg.data, cfg.space.image_size
    if SOURCE_TASK.match(name):
        from .sources.pool import provenance_digest

        source, sc, _ = source_settings(cfg, name)
        own = {k: v for k, v in dataclasses.asdict(sc).items() if k != "root"}
        spec = {"generator": SOURCES_VERSION, "task": name, "source": source, "settings": own, "image_size": size,
                "pool": provenance_digest(pool) if pool is not None else None}
        return {**spec, "probe": probe_spec(cfg, name, sc.min_x_chance)} if sc.min_x_chance > 0 else spec
    spec = {"generator": syn.GENERATOR_VERSION, "task": name, "seed": d.synthetic_seed, "image_size": size}
    if name == "digits":
        return {**spec, "test_fraction": d.digits_test_fraction}
    spec.update(train_per_class=d.synthetic_train_per_class, test_per_class=d.synthetic_test_per_class)
    if d.synthetic_family != "v1":   # v1 markers stay as they were: existing folders remain valid
        spec.update(family=d.synthetic_family, min_test_images=d.synthetic_min_test_images)
    if d.synthetic_family == "v3":
        spec.update(probe=probe_spec(cfg, name))
    return spec


def redraw_until_learnable(cfg, name: str, attempt: Callable[[int], dict], probe: Probe, what: str,
                           need: Optional[float] = None, key: str = "data.synthetic_min_x_chance") -> dict:
    """The first of ``attempt(0), attempt(1), ...`` whose teacher reaches ``need`` (default
    ``data.synthetic_min_x_chance``) times chance; the probe's accuracy and the rejected attempts go into the
    task's ``meta``."""
    need = cfg.data.synthetic_min_x_chance if need is None else need
    seen = []
    for k in range(MAX_ATTEMPTS):
        arrays = attempt(k)
        acc = float(probe(cfg, arrays))
        x_chance = acc * arrays["meta"]["num_classes"] / 100.0
        seen.append(round(x_chance, 2))
        if x_chance >= need:
            arrays["meta"]["probe"] = {"teacher_acc": acc, "x_chance": x_chance, "rejected_x_chance": seen[:-1]}
            return arrays
    raise ConfigError(f"{name}: no learnable {what} in {MAX_ATTEMPTS} attempts (teacher at {seen} x chance, "
                      f"{need} needed); lower '{key}' or train the teacher longer ('teacher.epochs')")


def make_source_task(cfg, name: str, pool, probe: Optional[Probe] = None) -> dict:
    """A class-subset task of a real source (module docstring); redrawn until learnable when its source's
    ``min_x_chance`` > 0."""
    from .sources.subsets import make_subset_task

    source, sc, _ = source_settings(cfg, name)
    index = int(SOURCE_TASK.match(name).group(2))

    def attempt(k: int) -> dict:
        return make_subset_task(pool, name, sc.seed, index, tuple(sc.num_classes), tuple(sc.train_per_class),
                                sc.test_per_class, sc.test_fraction, attempt=k)

    if sc.min_x_chance <= 0:
        return attempt(0)
    if probe is None:
        raise ConfigError(f"{name}: data.{source}.min_x_chance keeps only learnable tasks, which needs a probe that "
                          "trains the task's teacher; pass probe=dass.train.teachers.probe_teacher_accuracy")
    return redraw_until_learnable(cfg, name, attempt, probe, "class subset", sc.min_x_chance,
                                  f"data.{source}.min_x_chance")


def make_task_arrays(cfg, name: str, probe: Optional[Probe] = None, pool=None) -> dict:
    """The arrays and meta of one generated task (nothing written)."""
    d, size = cfg.data, cfg.space.image_size
    if SOURCE_TASK.match(name):
        return make_source_task(cfg, name, pool if pool is not None else source_pool(cfg, source_settings(cfg, name)[0]),
                                probe)
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
    pools: dict = {}
    for name in tqdm(names, desc="make-tasks", unit="task", disable=not progress or not sys.stderr.isatty()):
        pool = None
        if SOURCE_TASK.match(name):
            source = source_settings(cfg, name)[0]
            pool = pools[source] = pools.get(source) or source_pool(cfg, source, progress)
        spec = task_spec(cfg, name, pool)
        if force or not is_complete(root / name, spec):
            write_task(root / name, make_task_arrays(cfg, name, probe, pool), spec)
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
        if SOURCE_TASK.match(name):   # a real source's subset: how many train/test images
            row.update(source=meta["source"], train_per_class=meta["train_per_class"], test=meta["test_images"])
        if "probe" in meta:   # probed: its teacher's accuracy over chance and the attempts it took
            row.update(train_per_class=meta["train_per_class"], teacher_x_chance=round(meta["probe"]["x_chance"], 2),
                       attempts=meta.get("attempt", 0) + 1)
        rows.append(row)
    return rows
