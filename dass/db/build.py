"""The meta-training database builder (docs/method.md#database).

The part of the pipeline the authors never released.

For every task of ``cfg.tasks`` (meta-train, meta-valid and meta-test splits) it:

1. loads the task's data and its teacher (``dass.train.teachers.ensure_teacher``: a released or finished teacher
   is used as is, otherwise one is trained);
2. writes the teacher's support record (its own encoding, functional map and test accuracy,
   docs/method.md#meta-learning);
3. samples ``db.num_students`` students (``db.num_students_meta_test`` for a meta-test task; the first
   ``db.shared_students`` the same for every task) with a seed derived from ``db.sample_seed`` and the task name;
4. for each student: remaps it from the teacher, computes its functional map on the fixed noise
   (docs/method.md#embedding), KD-trains it with the ``kd`` recipe once per seed of ``db.kd_seeds`` (else
   ``db.kd_seed``) and records final acc, best acc, final loss (means over seeds, each seed's kept), MACs
   and params;
5. assembles the task's file in the authors' format (``dass.db.records``).

Work is a deterministic list of (task, student) items. Each finished student is written atomically to
``<db.out>/_work/<mode>/<task>/<index>.pt`` with a fingerprint of everything that determines it (space,
KD recipe, embedding settings, seed, architecture). A killed build re-runs only missing items; an
unreadable or mismatched item file (changed config, corrupt file) is redone, never merged.
``--shard K --num-shards N`` takes items ``g`` with ``g % N == K`` so processes, GPUs or cluster jobs
split the work; ``merge`` assembles the task files once every item exists.

``main.py build-db`` then writes the search's candidate pools (:func:`dass.search.build_candidates`) and
the database report (:mod:`dass.db.report`).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config, from_dict, resolve_device, to_dict
from ..data.tasks import SOURCE_NAMES, SOURCE_TASK, load_task
from ..embed import noise_input, student_map
from ..errors import CheckpointError, DassError
from ..io import atomic_torch_save, safe_torch_load
from ..layout import config_layout
from ..nets import ResNet
from ..parallel import process_pool
from ..remap import remap
from ..seeds import stable_seed
from ..space import Arch, SearchSpace
from ..train import engine as train
from ..train.logit_cache import TeacherLogitCache
from ..train.teachers import ensure_teacher
from .inputs import task_dataset_features, teacher_record
from .records import MODES, TaskRecords, TeacherRecord, candidate_file, save_records, search_dir


def task_plan(cfg: Config, modes: Optional[list[str]] = None) -> list[tuple[str, str]]:
    """``[(mode, task), ...]`` in a fixed order."""
    modes = modes or list(MODES)
    out = []
    for mode in modes:
        if mode not in MODES:
            raise DassError(f"unknown split '{mode}'; use one of {list(MODES)}")
        for task in getattr(cfg.tasks, mode):
            out.append((mode, task))
    return out


def label_seeds(cfg: Config) -> list[int]:
    """The KD seeds whose mean accuracy labels a student: ``db.kd_seeds``, or ``[db.kd_seed]``."""
    return [int(s) for s in cfg.db.kd_seeds] or [int(cfg.db.kd_seed)]


def shared_students(cfg: Config) -> list[Arch]:
    """The ``db.shared_students`` architectures every task distils first (the same for all tasks)."""
    space = SearchSpace.from_config(cfg)
    return space.sample_many(cfg.db.shared_students, rng=stable_seed("shared-students", cfg.db.sample_seed),
                             unique=True, exclude_teacher=True)


def num_students(cfg: Config, mode: str) -> int:
    if mode == "meta_test" and cfg.db.num_students_meta_test > 0:
        return cfg.db.num_students_meta_test
    return cfg.db.num_students


def students_for(cfg: Config, task: str, mode: str = "meta_train") -> list[Arch]:
    """The task's sampled students: the shared ones first, then draws deterministic in
    (db.sample_seed, task), all distinct, the teacher excluded."""
    space = SearchSpace.from_config(cfg)
    count = num_students(cfg, mode)
    shared = shared_students(cfg)[:count]
    rest = count - len(shared)
    if not shared:
        return space.sample_many(rest, rng=stable_seed("students", cfg.db.sample_seed, task),
                                 unique=True, exclude_teacher=True)
    seen, own = set(shared), []
    g = np.random.default_rng(stable_seed("students", cfg.db.sample_seed, task))
    while len(own) < rest:
        own += [a for a in space.sample_many(rest - len(own), rng=g, unique=True, exclude_teacher=True)
                if a not in seen and not seen.add(a)]
    return shared + own


@dataclass(frozen=True)
class WorkItem:
    mode: str
    task: str
    index: int
    arch: Arch


def work_items(cfg: Config, modes: Optional[list[str]] = None) -> list[WorkItem]:
    items = []
    for mode, task in task_plan(cfg, modes):
        items += [WorkItem(mode, task, i, a) for i, a in enumerate(students_for(cfg, task, mode))]
    return items


def fingerprint(cfg: Config, task: str, index: int, arch: Arch) -> str:
    """Everything that determines a student's record; a stored item with another fingerprint is redone."""
    kd = to_dict(cfg)["kd"]
    kd.pop("seeds", None)
    kd.pop("logit_cache_mb", None)  # a speed setting: records are bit-identical with or without the cache
    embed = to_dict(cfg)["embed"]
    embed.pop("workers", None)      # how many processes compute a map does not change it
    space = to_dict(cfg)["space"]
    if not space.get("last_block_full_width"):  # off = the space items were built in before the option existed
        space.pop("last_block_full_width", None)
    data = to_dict(cfg)["data"]
    data.pop("root", None)          # where the tasks live does not change them; how they were made does
    if data.get("synthetic_family") != "v3":   # the learnability bar shapes v3 tasks only
        data.pop("synthetic_min_x_chance", None)
    for source in SOURCE_NAMES:     # a source's settings shape its own tasks only ...
        data.pop(source, None)
    m = SOURCE_TASK.match(task)
    if m:                           # ... and so do its files: the pool digest the task was drawn from
        own = to_dict(cfg)["data"][m.group(1)]
        own.pop("root", None)
        data[m.group(1)] = {**own, "pool": _pool_digest(Path(cfg.data.root) / task)}
    t = cfg.train   # the precision switches change the recorded accuracies (README, decisions table)
    precision = {"amp": t.amp, "channels_last": t.channels_last, "cudnn_benchmark": t.cudnn_benchmark}
    doc = {"space": space, "kd": kd, "embed": embed, "kd_seed": cfg.db.kd_seed,
           "task": task, "index": index, "arch": arch.to_dict(), "data": data, "precision": precision}
    if cfg.db.kd_seeds:   # absent otherwise, so single-seed items keep their fingerprints
        doc["kd_seeds"] = label_seeds(cfg)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


_POOLS: dict = {}


def _pool_digest(folder: Path) -> Optional[str]:
    """The provenance digest of the pool a source task was drawn from (its meta.json), read once per file."""
    p = folder / "meta.json"
    try:
        key = (str(p), p.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _POOLS:
        try:
            _POOLS[key] = json.loads(p.read_text()).get("pool")
        except (OSError, ValueError):
            _POOLS[key] = None
    return _POOLS[key]


def work_dir(cfg: Config) -> Path:
    return Path(cfg.db.out) / "_work"


def item_file(cfg: Config, item: WorkItem) -> Path:
    return work_dir(cfg) / item.mode / item.task / f"{item.index:05d}.pt"


def load_item(cfg: Config, item: WorkItem) -> Optional[dict]:
    """A finished item, or None when missing, unreadable or made under another configuration."""
    p = item_file(cfg, item)
    if not p.is_file():
        return None
    try:
        rec = safe_torch_load(p, what="database item")
    except CheckpointError:
        return None
    if not isinstance(rec, dict) or rec.get("fingerprint") != fingerprint(cfg, item.task, item.index, item.arch):
        return None
    return rec


# --------------------------------------------------------------------------------------------- #
# teachers
# --------------------------------------------------------------------------------------------- #

def tasks_needing_data(cfg: Config, modes: Optional[list[str]] = None, candidates: bool = True) -> list[str]:
    """The tasks whose dataset a build will read (unfinished students or teacher record, missing candidate
    pools), so that a missing file is reported before any training starts."""
    pending = {(it.mode, it.task) for it in work_items(cfg, modes) if not item_file(cfg, it).is_file()}
    names = [t for m, t in task_plan(cfg, modes)
             if (m, t) in pending or not (work_dir(cfg) / m / t / "teacher.pt").is_file()]
    if candidates:
        names += [t for t in cfg.tasks.meta_test if not candidate_file(search_dir(cfg.db.out), t).is_file()]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------- #
# the build
# --------------------------------------------------------------------------------------------- #

def _set_threads(cfg: Config) -> None:
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)


def build(cfg: Config, modes: Optional[list[str]] = None, shard: int = 0, num_shards: int = 1,
          device=None, progress: bool = True, log: Callable[[str], None] = print,
          after_item: Optional[Callable[[WorkItem], None]] = None) -> dict:
    """Run this shard's share of the work list; assemble every task whose items are all present.

    ``after_item`` is called after each finished student (tests use it to simulate a kill).
    Returns counts: ``{'done': n_computed, 'skipped': n_already_there, 'assembled': [...]}``.
    """
    if not 0 <= shard < num_shards:
        raise DassError(f"--shard {shard} must lie in [0, --num-shards {num_shards})")
    _set_threads(cfg)
    device = device or resolve_device(cfg.run.device)
    space = SearchSpace.from_config(cfg)
    items = work_items(cfg, modes)
    mine = [it for g, it in enumerate(items) if g % num_shards == shard]
    todo = [it for it in mine if load_item(cfg, it) is None]
    log(f"[build-db] shard {shard}/{num_shards}: {len(mine)} students, {len(mine) - len(todo)} already done, "
        f"{len(todo)} to train")
    channels = max(space.stage_widths[cfg.embed.stage - 1:cfg.embed.stage])
    noise = noise_input(space.image_size, cfg.embed.num_noise, cfg.embed.noise_seed, device)
    bar = tqdm(total=len(todo), desc=f"build-db shard {shard}", unit="student", disable=not progress,
               dynamic_ncols=True)
    done = 0
    by_task: dict[tuple[str, str], list[WorkItem]] = {}
    for it in todo:
        by_task.setdefault((it.mode, it.task), []).append(it)
    for mode, task_name in task_plan(cfg, modes):
        task_items = by_task.get((mode, task_name), [])
        tdir = work_dir(cfg) / mode / task_name
        need_teacher_files = not (tdir / "teacher.pt").is_file()
        if not task_items and not need_teacher_files:
            continue
        data = load_task(task_name, cfg)
        teacher, acc = ensure_teacher(cfg, task_name, data, device, mode == "meta_test", progress)
        teacher.eval()
        if need_teacher_files:
            trec = teacher_record(cfg, teacher, acc, noise)
            feats = task_dataset_features(cfg, data)
            atomic_torch_save({"teacher": {"arch": trec.arch.to_dict(), "arch_enc": trec.arch_enc,
                                           "fmap": trec.fmap, "acc": trec.acc},
                               "dataset_features": feats, "num_classes": data.num_classes}, tdir / "teacher.pt")
        # Every student of the task is distilled with the same seed(s): they share the teacher's logits.
        logits = TeacherLogitCache.from_config(cfg)
        seeds = label_seeds(cfg)
        for it in task_items:
            bar.set_postfix_str(f"{task_name} #{it.index}")
            fmap = student_map(teacher, it.arch, noise, cfg.kd.remap, cfg.embed.stage, channels,
                               seed=stable_seed("init", task_name, it.index))
            runs = []
            for seed in seeds:
                student = _remapped(teacher, it.arch, cfg, task_name, it.index, device)
                runs.append(train.distill(teacher, student, data, cfg, seed=seed, device=device, out_dir=None,
                                          progress=False, logit_cache=logits))
            rec = {"fingerprint": fingerprint(cfg, task_name, it.index, it.arch), "task": task_name,
                   "index": it.index, "arch": it.arch.to_dict(), "arch_enc": space.encode(it.arch),
                   "fmap": fmap, **_labels(runs, seeds),
                   "macs": float(space.macs(it.arch, num_classes=data.num_classes)),
                   "params": float(space.params(it.arch, data.num_classes))}
            atomic_torch_save(rec, item_file(cfg, it))
            done += 1
            bar.update(1)
            if after_item is not None:
                after_item(it)
        if logits is not None and logits.hits:
            msg = (f"[build-db] {task_name}: teacher logits computed once ({logits.nbytes / 2 ** 20:.1f} MB), "
                   f"read by the {len(task_items) - 1} other students")
            if progress:
                bar.write(msg)   # above the progress bar
            else:
                log(msg)
    bar.close()
    assembled = merge(cfg, modes, strict=False, log=log)
    return {"done": done, "skipped": len(mine) - len(todo), "assembled": assembled}


def _labels(runs: list[dict], seeds: list[int]) -> dict:
    """A student's labels: the mean over its KD seeds (the value itself for one seed, so single-seed
    records are unchanged), plus each seed's accuracies when there are several."""
    out = {k: float(np.mean([float(r[k]) for r in runs])) if len(runs) > 1 else float(runs[0][k])
           for k in ("final_acc", "best_acc", "final_loss")}
    if len(runs) > 1:
        out.update(kd_seeds=list(seeds), seed_final_acc=[float(r["final_acc"]) for r in runs],
                   seed_best_acc=[float(r["best_acc"]) for r in runs])
    return out


def _remapped(teacher, arch: Arch, cfg: Config, task: str, index: int, device):
    torch.manual_seed(stable_seed("init", task, index))  # the init random remapping keeps
    student = ResNet(arch, teacher.num_classes, teacher.strides).to(device)
    return remap(teacher, student, cfg.kd.remap)


def assemble(cfg: Config, mode: str, task: str) -> Optional[TaskRecords]:
    """Stack a task's finished items into :class:`TaskRecords`; None when any item is missing."""
    items = [it for it in work_items(cfg, [mode]) if it.task == task]
    recs = []
    for it in items:
        r = load_item(cfg, it)
        if r is None:
            return None
        recs.append(r)
    tfile = work_dir(cfg) / mode / task / "teacher.pt"
    if not tfile.is_file():
        return None
    t = safe_torch_load(tfile, what="teacher record")
    ti = t["teacher"]
    teacher = TeacherRecord(Arch.from_dict(ti["arch"]), ti["arch_enc"], ti["fmap"], float(ti["acc"]))
    f = lambda k: torch.tensor([r[k] for r in recs], dtype=torch.float32)  # noqa: E731
    per_seed = {}
    if "seed_best_acc" in recs[0]:   # students x seeds -> seeds x students
        per_seed = {"kd_seeds": list(recs[0]["kd_seeds"]), "seed_best_acc": f("seed_best_acc").T.contiguous(),
                    "seed_final_acc": f("seed_final_acc").T.contiguous()}
    return TaskRecords(task=task, archs=[Arch.from_dict(r["arch"]) for r in recs],
                       arch_enc=torch.stack([r["arch_enc"] for r in recs]), fmaps=torch.stack([r["fmap"] for r in recs]),
                       best_acc=f("best_acc"), final_acc=f("final_acc"), final_loss=f("final_loss"),
                       macs=f("macs"), params=f("params"), net_index=[r["index"] for r in recs], teacher=teacher,
                       dataset_features=t.get("dataset_features"), layout=config_layout(cfg), **per_seed)


def merge(cfg: Config, modes: Optional[list[str]] = None, strict: bool = True,
          log: Callable[[str], None] = print) -> list[str]:
    """Write the authors'-format file of every task whose items are complete.

    With ``strict`` an incomplete task is an error naming how many students are missing.
    """
    written = []
    for mode, task in task_plan(cfg, modes):
        rec = assemble(cfg, mode, task)
        if rec is None:
            if strict:
                items = [it for it in work_items(cfg, [mode]) if it.task == task]
                missing = sum(load_item(cfg, it) is None for it in items)
                raise DassError(f"task {task} ({mode}) is incomplete: {missing} of {len(items)} students missing "
                                f"under {work_dir(cfg) / mode / task}; run build-db (all shards) first")
            continue
        save_records(rec, cfg.db.out, mode)
        written.append(task)
    if written:
        log(f"[build-db] wrote {len(written)} task file(s) under {cfg.db.out}")
    return written


# --------------------------------------------------------------------------------------------- #
# local multi-process build (one shard per worker process, 1 thread each: dass.parallel)
# --------------------------------------------------------------------------------------------- #

def ensure_teachers(cfg: Config, plan: list[tuple[str, str]], progress: bool = False, device=None) -> None:
    """Train (or check) the teachers of ``[(mode, task), ...]``: before any shard distils, so that no two
    shards train one teacher at once (the local workers and the SLURM array's first stage)."""
    device = device or resolve_device(cfg.run.device)
    for mode, task in plan:
        ensure_teacher(cfg, task, load_task(task, cfg), device, mode == "meta_test", progress)


def teachers_of_shard(cfg: Config, modes: Optional[list[str]], shard: int, num_shards: int) -> list[tuple[str, str]]:
    """The tasks whose teachers shard ``shard`` of ``num_shards`` trains: tasks ``shard, shard + N, ...``."""
    if not 0 <= shard < num_shards:
        raise DassError(f"--shard {shard} must lie in [0, --num-shards {num_shards})")
    return task_plan(cfg, modes)[shard::num_shards]


def _worker_teachers(args) -> None:
    cfg_dict, tasks = args
    ensure_teachers(from_dict(cfg_dict), tasks)


def _worker_shard(args) -> dict:
    cfg_dict, modes, shard, num_shards = args
    cfg = from_dict(cfg_dict)
    return build(cfg, modes, shard, num_shards, progress=False, log=lambda s: None)


def build_parallel(cfg: Config, workers: int, modes: Optional[list[str]] = None,
                   log: Callable[[str], None] = print) -> dict:
    """Teachers first (tasks spread over ``workers`` processes), then one student shard per process."""
    t0 = time.time()
    with process_pool(workers) as pool:
        chunks = [teachers_of_shard(cfg, modes, k, workers) for k in range(workers)]
        pool.map(_worker_teachers, [(to_dict(cfg), c) for c in chunks if c])
        log(f"[build-db] teachers ready ({time.time() - t0:.0f}s)")
        results = pool.map(_worker_shard, [(to_dict(cfg), modes, k, workers) for k in range(workers)])
    assembled = merge(cfg, modes, strict=True, log=log)
    return {"done": sum(r["done"] for r in results), "skipped": sum(r["skipped"] for r in results),
            "assembled": assembled}
