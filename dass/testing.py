"""A small, seeded, synthetic-but-learnable meta-training database (for tests and timing runs).

Real databases come from KD-training hundreds of students; tests need something that takes
milliseconds yet has the structure the predictor must learn. For task ``t`` (everything drawn from
``numpy.random.default_rng([seed, t])``):

* a task *difficulty* ``b_t`` (the teacher's accuracy), a *spread* ``s_t`` and a stage-importance
  vector ``u_t`` (Dirichlet);
* the teacher map ``M_t`` (C x h x w, non-negative): a pattern shared by all tasks plus a
  task-specific part, scaled by ``b_t`` (so T carries the task's level);
* a student's capacity ``q = sum_s u_t[s] * (mean width_s / stage width_s) * (depth_s / max depth)``
  (the teacher has q = 1);
* its functional map = ``M_t`` restricted to its last-stage channels (zero-padded, like the real
  embedding) plus interference noise growing with ``1 - q``;
* its accuracy ``b_t - s_t * (1 - q) + noise`` (percent); the teacher's accuracy is ``b_t + noise``.

So ranking within a task follows capacity (visible in the encoding and in the map's similarity to the
teacher's), and the level of a task is given by its teacher: exactly what teacher-guided adaptation
is for. Dataset features (``classes x samples x F``) are noisy copies of a task-dependent mean, so the
D input carries the task's difficulty too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .db.records import LIST_KEYS, MAP_KEY, MODES, TaskRecords, TeacherRecord, records_to_dict, save_records
from .space import SearchSpace


def _capacity(space: SearchSpace, arch, u: np.ndarray) -> float:
    q = 0.0
    for s, ws in enumerate(arch.widths):
        frac_w = float(np.mean(ws)) / space.stage_widths[s]
        q += u[s] * frac_w * len(ws) / space.max_depth
    return q


def make_fixture_task(space: SearchSpace, name: str, index: int, n_students: int = 24, seed: int = 0,
              hw: Optional[int] = None, feature_dim: int = 16, classes: int = 4, samples: int = 5,
              with_dataset: bool = True, noise: float = 0.5) -> TaskRecords:
    g = np.random.default_rng([int(seed), int(index)])
    c = space.stage_widths[-1]
    h = hw or space.feature_sizes()[-1]
    u = g.dirichlet(np.ones(space.num_stages))
    b = float(g.uniform(45.0, 85.0))
    # Teacher maps share a common pattern (as maps of one architecture family do) with a task-specific
    # part; their scale follows the task's accuracy, so T carries the task's level.
    base = np.random.default_rng([int(seed), 20_000]).standard_normal((c, h, h))
    m = (np.maximum(base + 0.5 * g.standard_normal((c, h, h)), 0.0) * (b / 65.0)).astype(np.float32)
    spread = float(g.uniform(8.0, 20.0))
    archs = space.sample_many(n_students, g, exclude_teacher=True)
    fmaps, accs, qs = [], [], []
    for a in archs:
        q = _capacity(space, a, u)
        f = m.copy()
        f[a.out_channels:] = 0.0
        f = f + (1.0 - q) * 0.7 * np.maximum(g.standard_normal((c, h, h)), 0.0)
        f[a.out_channels:] = 0.0
        fmaps.append(f.astype(np.float32))
        qs.append(q)
        accs.append(b - spread * (1.0 - q) + noise * g.standard_normal())
    best = torch.tensor(accs, dtype=torch.float32)
    final = best - torch.tensor(np.abs(g.standard_normal(n_students)) * noise, dtype=torch.float32)
    teacher_arch = space.teacher()
    teacher = TeacherRecord(arch=teacher_arch, arch_enc=space.encode(teacher_arch), fmap=torch.from_numpy(m),
                            acc=b + noise * float(g.standard_normal()))
    dfeat = None
    if with_dataset:
        proj = np.random.default_rng([int(seed), 10_000]).standard_normal((2 + space.num_stages, feature_dim))
        mean = np.concatenate([[b / 50.0, spread / 10.0], u]) @ proj
        dfeat = torch.tensor(mean + 0.3 * g.standard_normal((classes, samples, feature_dim)), dtype=torch.float32)
    return TaskRecords(
        task=name, archs=archs, arch_enc=torch.stack([space.encode(a) for a in archs]),
        fmaps=torch.from_numpy(np.stack(fmaps)), best_acc=best, final_acc=final,
        final_loss=torch.tensor(g.uniform(0.5, 2.0, n_students), dtype=torch.float32),
        macs=torch.tensor([float(space.macs(a)) for a in archs]),
        params=torch.tensor([float(space.params(a)) for a in archs]),
        net_index=list(range(n_students)), teacher=teacher, dataset_features=dfeat)


def make_fixture_db(space: SearchSpace, tasks: dict[str, Sequence[str]], n_students: int = 24, seed: int = 0,
                    root: Optional[str | Path] = None, **kw) -> dict[str, list[TaskRecords]]:
    """``tasks = {"meta_train": [...], "meta_valid": [...], "meta_test": [...]}`` -> records per mode.

    With ``root`` the records are also written in the on-disk format (``records.save_records``).
    """
    out: dict[str, list[TaskRecords]] = {}
    index = 0
    for mode in MODES:
        out[mode] = []
        for name in tasks.get(mode, []):
            rec = make_fixture_task(space, name, index, n_students, seed, **kw)
            index += 1
            if root is not None:
                save_records(rec, root, mode)
            out[mode].append(rec)
    return out


def fixture_db_for_config(cfg, root: Optional[str | Path] = None, **kw) -> dict[str, list[TaskRecords]]:
    """The fixture database for a config's space and task lists, written to ``root or cfg.db.out``."""
    space = SearchSpace.from_config(cfg)
    tasks = {"meta_train": cfg.tasks.meta_train, "meta_valid": cfg.tasks.meta_valid,
             "meta_test": cfg.tasks.meta_test}
    kw.setdefault("n_students", cfg.db.num_students)
    kw.setdefault("feature_dim", cfg.predictor.dataset_feature_dim)
    return make_fixture_db(space, tasks, seed=cfg.db.sample_seed, root=root if root is not None else cfg.db.out, **kw)


def _authors_dict(rec: TaskRecords) -> dict:
    """Exactly the authors' keys: no macs/params/features, maps with a leading batch dim of 1."""
    d = {k: v for k, v in records_to_dict(rec).items() if k in LIST_KEYS}
    d[MAP_KEY] = [m.unsqueeze(0) for m in d[MAP_KEY]]
    return d


def write_authors_preprocessed(space: SearchSpace, root: str | Path, tasks: dict[str, Sequence[str]],
                               n_students: int = 24, num_candidates: int = 12, seed: int = 0) -> Path:
    """A ``preprocessed/`` folder laid out as the authors' release is (docs/method.md#authors-compat), from the
    fixture tasks of :func:`make_fixture_task`: ``ours/<mode>/<task>-logs_noise_actmap.pt`` and its ``teacher/``
    record (without ``net_index``), and for each meta-test task a search pool ``search/<task>.pt`` holding only
    the predictor inputs
    nested under ``pred_inp`` and the map key (no architectures, no teacher), whose architectures are
    listed once in ``net_info/net_samples.pt`` as ``(flops, params, depth_config, channel_widths)``."""
    from .db.records import teacher_record_dict

    root = Path(root)
    ours = root / "ours"
    by_mode = make_fixture_db(space, tasks, n_students, seed)
    for mode, recs in by_mode.items():
        for rec in recs:
            _save(_authors_dict(rec), ours / mode / f"{rec.task}-logs_noise_actmap.pt")
            t = teacher_record_dict(rec.teacher)
            t[MAP_KEY] = [m.unsqueeze(0) for m in t[MAP_KEY]]
            del t["net_index"]   # the authors' loader never reads it, and their records may lack it
            _save(t, ours / mode / "teacher" / f"{rec.task}-logs_noise_actmap.pt")
    cands = space.sample_many(num_candidates, rng=np.random.default_rng([int(seed), 30_000]))
    _save([(space.macs(a), space.params(a), list(a.depths), [list(w) for w in a.widths]) for a in cands],
          root / "net_info" / "net_samples.pt")
    for rec in by_mode.get("meta_test", []):
        maps = []
        for a in cands:   # the teacher's map restricted to the candidate's channels, scaled by its size
            m = rec.teacher.fmap.clone() * (space.params(a) / space.params(space.teacher()))
            m[a.out_channels:] = 0.0
            maps.append(m.unsqueeze(0))
        _save({"pred_inp": {"arch_enc": [space.encode(a) for a in cands]}, MAP_KEY: maps},
              root / "search" / f"{rec.task}.pt")
    return root


def _save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


__all__ = ["make_fixture_task", "make_fixture_db", "fixture_db_for_config", "write_authors_preprocessed"]


def write_toy_task(root, name: str, num_classes: int, n_train: int, n_test: int, seed: int, size: int = 8,
                   noise: int = 30, meta: Optional[dict] = None) -> Path:
    """A learnable toy task in the authors' ``<name>/{split}_{images,labels}.npy`` layout: each class has
    its own grey level, plus uniform noise in ``[-noise, noise)`` (tests and bench/bench_db_scaling.py)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % num_classes
        base = (y[:, None, None, None] * (200 // num_classes) + 20).astype(np.int16)
        x = np.clip(base + rng.integers(-noise, noise, size=(n, size, size, 3)), 0, 255).astype(np.uint8)
        np.save(d / f"{split}_images.npy", x)
        np.save(d / f"{split}_labels.npy", y.astype(np.int64))
    if meta is not None:
        (d / "meta.json").write_text(json.dumps(meta))
    return d
