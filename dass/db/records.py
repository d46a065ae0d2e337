"""The meta-training database in memory and on disk, in the authors' format (docs/method.md#file-formats).

On disk, one file per task (``<root>/<mode>/<task>-logs_noise_actmap.pt``) holding a dict of
parallel lists, exactly the authors' keys::

    net_index, arch_enc, noise_actmap_stage-4, depth_config, channel_widths,
    final_acc, best_acc, final_loss

plus the project's extra keys ``macs`` and ``params`` (readers of the authors' format ignore extra
keys; files without them get the values recomputed from the architecture). The teacher's support
record is the same dict with one entry at ``<root>/<mode>/teacher/<task>-logs_noise_actmap.pt``.
Search candidates (no accuracies) use the same keys at ``preprocessed/search/<dataset>.pt`` with
accuracies set to NaN, plus the authors' nesting (``pred_inp``, ``arch_info``); the authors' own pools are
read by :func:`candidate_dict`. Every file we write carries its input layout (:mod:`dass.layout`).

In memory a task is a :class:`TaskRecords`: stacked tensors, ready for the predictor.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import DassError, DataError
from ..io import atomic_torch_save, safe_torch_load
from ..layout import KEY as LAYOUT_KEY
from ..layout import config_layout, require_same
from ..space import Arch, SearchSpace

MAP_KEY = "noise_actmap_stage-4"
LIST_KEYS = ("net_index", "arch_enc", MAP_KEY, "depth_config", "channel_widths", "final_acc", "best_acc",
             "final_loss")
MODES = ("meta_train", "meta_valid", "meta_test")


@dataclass
class TeacherRecord:
    """The support set of teacher-guided adaptation (docs/method.md#meta-learning): the teacher encoded as a student."""

    arch: Arch
    arch_enc: torch.Tensor      # E
    fmap: torch.Tensor          # C x h x w, the teacher's own functional embedding
    acc: float                  # the teacher's test accuracy, percent


@dataclass
class TaskRecords:
    """All recorded students of one task plus its teacher record."""

    task: str
    archs: list[Arch]
    arch_enc: torch.Tensor      # N x E float
    fmaps: torch.Tensor         # N x C x h x w float (student functional embeddings)
    best_acc: torch.Tensor      # N float, percent (NaN for search candidates)
    final_acc: torch.Tensor     # N
    final_loss: torch.Tensor    # N
    macs: torch.Tensor          # N float
    params: torch.Tensor        # N float
    net_index: list[int]
    teacher: Optional[TeacherRecord] = None
    dataset_features: Optional[torch.Tensor] = None  # classes x samples x F, for the D input
    layout: Optional[dict] = None    # dass.layout: the encoding and noise these inputs were made with
    # Multi-seed labels (docs/method.md#benchmark): best_acc/final_acc are then the means over these seeds.
    kd_seeds: Optional[list[int]] = None
    seed_best_acc: Optional[torch.Tensor] = None    # seeds x N
    seed_final_acc: Optional[torch.Tensor] = None   # seeds x N
    # Which accuracy of a student's KD run is its label (meta.acc_type): "best_acc" (paper) or "final_acc".
    label_key: str = "best_acc"

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def label(self) -> torch.Tensor:
        """The students' labels: what meta-training learns and meta-test ranks against (``label_key``)."""
        return self.best_acc if self.label_key == "best_acc" else self.final_acc

    @property
    def seed_label(self) -> Optional[torch.Tensor]:
        """Each KD seed's labels (seeds x N), when the database kept them."""
        return self.seed_best_acc if self.label_key == "best_acc" else self.seed_final_acc

    def subset(self, idx) -> "TaskRecords":
        idx = torch.as_tensor(idx, dtype=torch.long)
        il = idx.tolist()
        cols = lambda t: None if t is None else t[:, idx]  # noqa: E731
        return TaskRecords(self.task, [self.archs[i] for i in il], self.arch_enc[idx], self.fmaps[idx],
                           self.best_acc[idx], self.final_acc[idx], self.final_loss[idx], self.macs[idx],
                           self.params[idx], [self.net_index[i] for i in il], self.teacher,
                           self.dataset_features, self.layout, self.kd_seeds,
                           cols(self.seed_best_acc), cols(self.seed_final_acc), self.label_key)


def _fmap(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t).float()
    return t[0] if t.dim() == 4 and t.shape[0] == 1 else t


def records_to_dict(rec: TaskRecords) -> dict:
    """TaskRecords -> the authors' dict of parallel lists (+ macs, params)."""
    n = len(rec)
    d = {
        "net_index": list(rec.net_index),
        "arch_enc": [rec.arch_enc[i].clone() for i in range(n)],
        MAP_KEY: [rec.fmaps[i].clone() for i in range(n)],
        "depth_config": [list(a.depths) for a in rec.archs],
        "channel_widths": [[list(w) for w in a.widths] for a in rec.archs],
        "final_acc": [float(x) for x in rec.final_acc],
        "best_acc": [float(x) for x in rec.best_acc],
        "final_loss": [float(x) for x in rec.final_loss],
        "macs": [float(x) for x in rec.macs],
        "params": [float(x) for x in rec.params],
    }
    if rec.dataset_features is not None:
        d["dataset_features"] = rec.dataset_features.clone()
    if rec.seed_best_acc is not None:   # project keys: one list per seed, parallel to the students
        d["kd_seeds"] = list(rec.kd_seeds)
        d["seed_best_acc"] = rec.seed_best_acc.tolist()
        d["seed_final_acc"] = rec.seed_final_acc.tolist()
    if rec.layout is not None:
        d[LAYOUT_KEY] = rec.layout
    return d


def dict_to_records(d: dict, task: str, source: str, space: Optional[SearchSpace] = None,
                    num_classes: int = 0, needs_index: bool = True) -> TaskRecords:
    """The authors' dict -> TaskRecords, validating that the lists are parallel. ``needs_index=False``
    (teacher records: the authors' loader never reads the key, and some of their files lack it) numbers
    the entries from 0 when ``net_index`` is absent."""
    if not isinstance(d, dict):
        raise DassError(f"{source}: expected a dict of parallel lists (authors' format), got {type(d).__name__}")
    if not needs_index and "net_index" not in d and "arch_enc" in d:
        d = {**d, "net_index": list(range(len(d["arch_enc"])))}
    missing = [k for k in LIST_KEYS if k not in d]
    if missing:
        raise DassError(f"{source}: missing key '{missing[0]}'; the file is not a DaSS database file")
    n = len(d["net_index"])
    for k in LIST_KEYS:
        if len(d[k]) != n:
            raise DassError(f"{source}: list '{k}' has {len(d[k])} entries but 'net_index' has {n}; the file "
                            f"is corrupt, rebuild it")
    if n == 0:
        raise DassError(f"{source}: holds no records; rebuild it")
    if not isinstance(d.get(LAYOUT_KEY, {}), dict):
        raise DassError(f"{source}: its '{LAYOUT_KEY}' entry is not a mapping; the file is corrupt, rebuild it")
    archs = [Arch.from_authors(dc, cw) for dc, cw in zip(d["depth_config"], d["channel_widths"])]
    fmaps = torch.stack([_fmap(m) for m in d[MAP_KEY]])
    arch_enc = torch.stack([torch.as_tensor(e).float().flatten() for e in d["arch_enc"]])

    def vec(key: str, fallback=None) -> torch.Tensor:
        if key in d:
            return torch.tensor([float(x) if x is not None else math.nan for x in d[key]])
        if fallback is not None:
            return fallback
        return torch.full((n,), math.nan)

    if space is not None and "macs" not in d:
        macs = torch.tensor([float(space.macs(a, num_classes=num_classes)) for a in archs])
        params = torch.tensor([float(space.params(a, num_classes)) for a in archs])
    else:
        macs, params = vec("macs"), vec("params")
    per_seed = {}
    if "seed_best_acc" in d:
        per_seed = {"kd_seeds": [int(x) for x in d["kd_seeds"]],
                    "seed_best_acc": _seed_table(d, "seed_best_acc", n, source),
                    "seed_final_acc": _seed_table(d, "seed_final_acc", n, source)}
    return TaskRecords(task=task, archs=archs, arch_enc=arch_enc, fmaps=fmaps, best_acc=vec("best_acc"),
                       final_acc=vec("final_acc"), final_loss=vec("final_loss"), macs=macs, params=params,
                       net_index=[int(x) for x in d["net_index"]],
                       dataset_features=d.get("dataset_features"), layout=d.get(LAYOUT_KEY), **per_seed)


def _seed_table(d: dict, key: str, n: int, source: str) -> torch.Tensor:
    t = torch.tensor(d.get(key, []), dtype=torch.float32)
    if t.dim() != 2 or t.shape != (len(d.get("kd_seeds", [])), n):
        raise DassError(f"{source}: '{key}' must hold one list of {n} accuracies per entry of 'kd_seeds'; the file "
                        f"is corrupt, rebuild it")
    return t


def candidate_dict(d: dict, source: str, net_samples: Optional[Callable[[], list]] = None) -> dict:
    """A search pool, ours or the authors', as the flat dict of parallel lists :func:`dict_to_records` reads.

    The authors' pool nests the predictor inputs under ``pred_inp`` (``pred_inp.arch_enc``; the maps under
    the top-level map key or ``pred_inp.func_enc``), may keep the architectures under ``arch_info`` or
    only in ``net_info/net_samples.pt`` (``net_samples()`` reads it), and has no accuracies
    (docs/method.md#authors-compat).
    """
    if not isinstance(d, dict):
        raise DassError(f"{source}: expected a dict (a search pool), got {type(d).__name__}; rebuild it")
    pred = d.get("pred_inp") if isinstance(d.get("pred_inp"), dict) else {}
    info = d.get("arch_info") if isinstance(d.get("arch_info"), dict) else {}
    enc = d.get("arch_enc", pred.get("arch_enc"))
    maps = d.get(MAP_KEY, pred.get("func_enc"))
    for key, val in (("arch_enc", enc), (MAP_KEY, maps)):
        if val is None:
            raise DassError(f"{source}: has neither '{key}' nor 'pred_inp.{key}'; it is not a search pool, "
                            f"rebuild it with main.py build-db --candidates")
    n = len(enc)
    dc, cw = d.get("depth_config") or info.get("depth_config"), d.get("channel_widths") or info.get("channel_widths")
    if not dc or not cw:
        entries = net_samples() if net_samples is not None else None
        if not isinstance(entries, (list, tuple)) or len(entries) != n:
            got = "no" if entries is None else len(entries) if isinstance(entries, (list, tuple)) else "no list of"
            raise DassError(f"{source}: its {n} candidates carry no architectures and net_info/net_samples.pt has "
                            f"{got} entries; download the authors' preprocessed/ folder whole or rebuild the pool")
        try:
            dc, cw = [list(e[2]) for e in entries], [list(e[3]) for e in entries]
        except (TypeError, IndexError, KeyError):
            raise DassError(f"{source}: net_info/net_samples.pt entries are not (flops, params, depth_config, "
                            f"channel_widths); download it again") from None
    out = {k: v for k, v in d.items() if k not in ("pred_inp", "arch_info")}
    out.update({"arch_enc": list(enc), MAP_KEY: list(maps), "depth_config": dc, "channel_widths": cw})
    out.setdefault("net_index", list(range(n)))
    for k in ("final_acc", "best_acc", "final_loss"):
        out.setdefault(k, [math.nan] * n)
    return out


def nest_for_authors(d: dict) -> dict:
    """Our pool dict plus the authors' nesting (``pred_inp``, ``arch_info``), so their search reads it too."""
    return {**d, "pred_inp": {"arch_enc": d["arch_enc"]},
            "arch_info": {"depth_config": d["depth_config"], "channel_widths": d["channel_widths"]}}


def task_file(root: str | os.PathLike, mode: str, task: str) -> Path:
    return Path(root) / mode / f"{task}-logs_noise_actmap.pt"


def teacher_file(root: str | os.PathLike, mode: str, task: str) -> Path:
    return Path(root) / mode / "teacher" / f"{task}-logs_noise_actmap.pt"


def save_records(rec: TaskRecords, root: str | os.PathLike, mode: str) -> Path:
    """Write a task's student file and (when present) its teacher record, atomically."""
    p = atomic_torch_save(records_to_dict(rec), task_file(root, mode, rec.task))
    if rec.teacher is not None:
        save_teacher_record(rec.teacher, rec.task, root, mode, rec.layout)
    return p


def teacher_record_dict(t: TeacherRecord, layout: Optional[dict] = None) -> dict:
    d = {"net_index": [-1], "arch_enc": [t.arch_enc.clone()], MAP_KEY: [t.fmap.clone()],
         "depth_config": [list(t.arch.depths)], "channel_widths": [[list(w) for w in t.arch.widths]],
         "final_acc": [float(t.acc)], "best_acc": [float(t.acc)], "final_loss": [float("nan")]}
    if layout is not None:
        d[LAYOUT_KEY] = layout
    return d


def save_teacher_record(t: TeacherRecord, task: str, root: str | os.PathLike, mode: str,
                        layout: Optional[dict] = None) -> Path:
    return atomic_torch_save(teacher_record_dict(t, layout), teacher_file(root, mode, task))


def load_teacher_record(root: str | os.PathLike, mode: str, task: str, allow_pickle: bool = False,
                        layout: Optional[dict] = None) -> TeacherRecord:
    """The support record; refused when it was made with another layout than ``layout`` (its students')."""
    p = teacher_file(root, mode, task)
    r = dict_to_records(safe_torch_load(p, allow_pickle, what="teacher record"), task, str(p), needs_index=False)
    require_same(r.layout, layout, f"teacher record {p}", f"the {task} students it supports",
                 "rebuild both with one configuration")
    return TeacherRecord(arch=r.archs[0], arch_enc=r.arch_enc[0], fmap=r.fmaps[0], acc=float(r.best_acc[0]))


def load_records(root: str | os.PathLike, mode: str, task: str, space: Optional[SearchSpace] = None,
                 num_classes: int = 0, allow_pickle: bool = False, with_teacher: bool = True,
                 default_layout: Optional[dict] = None) -> TaskRecords:
    """Read one task (ours or the authors'), with its teacher record when ``with_teacher``. A file without
    a layout (the authors') is taken to have ``default_layout``, the one its configuration declares, so it
    is checked against a predictor's like any other (docs/method.md#authors-compat)."""
    p = task_file(root, mode, task)
    rec = dict_to_records(safe_torch_load(p, allow_pickle, what="database file"), task, str(p), space, num_classes)
    rec.layout = rec.layout or default_layout
    if with_teacher:
        rec.teacher = load_teacher_record(root, mode, task, allow_pickle, rec.layout)
        if rec.teacher.arch_enc.shape != rec.arch_enc.shape[1:]:
            raise DassError(f"{teacher_file(root, mode, task)}: teacher encoding has {rec.teacher.arch_enc.numel()} "
                            f"entries but the students' have {rec.arch_enc.shape[1]}; both must come from one space")
    return rec


def search_dir(db_out: str | os.PathLike) -> Path:
    """``preprocessed/search`` next to ``preprocessed/ours`` (docs/method.md#file-formats)."""
    return Path(db_out).parent / "search"


def candidate_file(root: str | os.PathLike, dataset: str) -> Path:
    return Path(root) / f"{dataset}.pt"


def net_samples_file(db_out: str | os.PathLike) -> Path:
    """``preprocessed/net_info/net_samples.pt`` next to ``preprocessed/ours``: the candidate list through which
    the authors' KD script resolves a searched index (docs/method.md#authors-compat)."""
    return Path(db_out).parent / "net_info" / "net_samples.pt"


def locate_task(root: str | os.PathLike, mode: str, task: str) -> tuple[str, Path]:
    """``(mode, file)`` of a task in a database: under ``mode`` first, else under another split, so a config
    may regroup a database's tasks (a leave-one-source-out run meta-trains on tasks built as meta-test)."""
    for m in (mode, *[x for x in MODES if x != mode]):
        if task_file(root, m, task).is_file():
            return m, task_file(root, m, task)
    raise DataError(f"database file {task_file(root, mode, task)} does not exist; build the database first "
                    f"(build-db) or fix config key 'db.out'")


def load_split_records(cfg, mode: str, required: bool = True) -> list[TaskRecords]:
    """Every task of ``cfg.tasks.<mode>`` from the database at ``cfg.db.out``, labelled by ``meta.acc_type``.

    A missing file is an error when ``required``; otherwise the task is skipped with a note (the
    meta-test tasks are only logged during meta-training).
    """
    space = SearchSpace.from_config(cfg)
    out = []
    for task in getattr(cfg.tasks, mode):
        try:
            where, _ = locate_task(cfg.db.out, mode, task)
        except DassError:
            if required:
                raise
            print(f"note: {mode} task {task} is not in the database {cfg.db.out}; skipped", file=sys.stderr)
            continue
        rec = load_records(cfg.db.out, where, task, space, 0, cfg.run.allow_legacy_pickle,
                           default_layout=config_layout(cfg))
        out.append(with_label(rec, cfg.meta.acc_type))
    return out


def with_label(records: TaskRecords, acc_type: str) -> TaskRecords:
    """Records labelled by ``meta.acc_type``: the best evaluation of each KD run (paper) or its final one."""
    return dataclasses.replace(records, label_key="best_acc" if acc_type == "best" else "final_acc")
