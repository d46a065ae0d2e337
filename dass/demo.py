"""The embedded default end to end (issue 7): ``python main.py demo --config configs/demo.yaml``.

Stages (each reuses its finished output on a second run, so an interrupted demo resumes):

1. tasks       -- generate the task family and the bundled real dataset (digits) in the numpy layout
2. database    -- train teachers, sample/remap/embed/KD-train students, record them; search candidates
3. meta-train  -- the DaSS predictor with teacher-guided adaptation
4. meta-test   -- DaSS and the baselines side by side on the unseen tasks (Spearman per task)
5. search      -- on each unseen task, the top candidate under the MACs budget
6. distill     -- KD of the searched student, of a random student and of the largest student under the
                  same budget, for every seed of ``kd.seeds`` (mean +- std)

The report is printed and written to ``<demo.out>/report.md`` with ``report.json`` and per-stage wall times.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from .config import Config, save_config
from .io import read_json, write_json


class Stages:
    """Runs named stages, timing each and skipping those whose output is already complete."""

    def __init__(self, out: Path, log: Callable[[str], None] = print):
        self.out, self.log = out, log
        self.times: dict[str, dict] = {}

    def run(self, name: str, done: Callable[[], bool], fn: Callable[[], object]):
        if done():
            self.log(f"== {name}: reusing finished output")
            self.times[name] = {"seconds": 0.0, "reused": True}
            return None
        self.log(f"== {name}")
        t0 = time.time()
        res = fn()
        self.times[name] = {"seconds": round(time.time() - t0, 1), "reused": False}
        self.log(f"== {name}: {self.times[name]['seconds']:.1f}s")
        return res


def _all_task_files(cfg: Config) -> bool:
    from .database import candidate_file, search_root, task_plan
    from .records import task_file

    return all(task_file(cfg.db.out, m, t).is_file() for m, t in task_plan(cfg)) and all(
        candidate_file(search_root(cfg), t).is_file() for t in cfg.tasks.meta_test)


def budget_macs(cfg: Config) -> float:
    from .space import SearchSpace

    space = SearchSpace.from_config(cfg)
    return cfg.demo.budget_frac * space.macs(space.teacher())


def run_demo(cfg: Config, workers: int = 0, log: Callable[[str], None] = print) -> dict:
    from . import database as db
    from .synthetic import generate_tasks

    out = Path(cfg.demo.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out, {"command": "demo"})
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    if cfg.search.max_macs <= 0 and cfg.demo.budget_frac > 0:
        cfg.search.max_macs = budget_macs(cfg)
    st = Stages(out, log)
    t_start = time.time()

    st.run("tasks", lambda: False, lambda: generate_tasks(cfg, progress=False))

    def database():
        res = db.build_parallel(cfg, workers, log=log) if workers > 1 else db.build(cfg, log=log)
        db.build_candidates(cfg, progress=False, log=log)
        return res

    st.run("database", lambda: _all_task_files(cfg), database)
    rows = db.sanity_report(cfg)
    log(db.format_table(rows))

    best_ckpt = Path(cfg.meta.out) / "best.pt"
    st.run("meta-train", lambda: (Path(cfg.meta.out) / "done.json").is_file() and best_ckpt.is_file(),
           lambda: _meta_train(cfg, log))

    mt_file = out / "meta_test.json"
    st.run("meta-test", lambda: mt_file.is_file(), lambda: write_json(mt_file, _meta_test(cfg, str(best_ckpt))))
    meta_rows = read_json(mt_file)

    search_file = out / "search.json"
    st.run("search", lambda: search_file.is_file(), lambda: write_json(search_file, _search(cfg, str(best_ckpt))))
    picks = read_json(search_file)

    distill_file = out / "distill.json"
    st.run("distill", lambda: distill_file.is_file(), lambda: write_json(distill_file, _distill(cfg, picks, log)))
    distilled = read_json(distill_file)

    report = {"spearman": meta_rows, "search": picks, "distill": distilled, "stages": st.times,
              "total_seconds": round(time.time() - t_start, 1), "database": rows}
    text = format_report(cfg, report)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(text + "\n")
    log(text)
    return report


def _meta_train(cfg: Config, log) -> dict:
    from .config import resolve_device
    from .meta import load_tasks, train_or_reuse

    best = train_or_reuse(cfg, load_tasks(cfg, "meta_train"), load_tasks(cfg, "meta_valid"),
                          load_tasks(cfg, "meta_test", required=False), resolve_device(cfg.run.device),
                          progress=False)
    write_json(Path(cfg.meta.out) / "done.json", {"best": str(best)})
    return {"best": str(best)}


def _meta_test(cfg: Config, ckpt: str) -> list[dict]:
    from .meta_test import run_meta_test

    return run_meta_test(cfg, checkpoint=ckpt, baselines="all", progress=False)


def _search(cfg: Config, ckpt: str) -> dict:
    import numpy as np

    from .search import run_search

    picks = {}
    for task in cfg.tasks.meta_test:
        res = run_search(cfg, task, "dass", ckpt, progress=False)
        rec = res.records
        inside = [i for i in range(len(rec)) if bool(res.allowed[i])]
        rng = np.random.default_rng(cfg.run.seed)
        random_pick = int(inside[int(rng.integers(len(inside)))])
        largest = max(inside, key=lambda i: (float(rec.macs[i]), -i))
        picks[task] = {
            "budget_macs": cfg.search.max_macs,
            "dass": {"index": res.best, "arch": rec.archs[res.best].to_dict(), "macs": float(rec.macs[res.best]),
                     "predicted": float(res.scores[res.best])},
            "random": {"index": random_pick, "arch": rec.archs[random_pick].to_dict(),
                       "macs": float(rec.macs[random_pick])},
            "largest": {"index": largest, "arch": rec.archs[largest].to_dict(), "macs": float(rec.macs[largest])},
            "teacher_acc": rec.teacher.acc,
        }
    return picks


def _distill(cfg: Config, picks: dict, log) -> dict:
    from .config import resolve_device
    from .data import load_task
    from .space import Arch
    from .logit_cache import TeacherLogitCache
    from .remap import remapped_student
    from .teachers import load_teacher_for
    from .train import distill

    device = resolve_device(cfg.run.device)
    out = {}
    for task, p in picks.items():
        data = load_task(task, cfg)
        teacher, _ = load_teacher_for(cfg, task, data.num_classes, device)
        out[task] = {}
        logits = TeacherLogitCache.from_config(cfg)  # the three students share each seed's teacher logits
        for who in ("dass", "random", "largest"):
            arch = Arch.from_dict(p[who]["arch"])
            accs = []
            for seed in cfg.kd.seeds:
                torch.manual_seed(seed)
                student = remapped_student(teacher, arch, cfg.kd.remap)
                accs.append(float(distill(teacher, student, data, cfg, seed=seed, device=device, out_dir=None,
                                          progress=False, logit_cache=logits)["best_acc"]))
            out[task][who] = {"accs": accs, "mean": statistics.fmean(accs),
                              "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
            log(f"   {task:>10} {who:>8}: {out[task][who]['mean']:.2f} +- {out[task][who]['std']:.2f}")
    return out


def format_report(cfg: Config, r: dict) -> str:
    lines = ["# DaSS demo report (embedded default)", ""]
    sp = r["spearman"]
    methods = []
    for row in sp:
        if row["method"] not in methods:
            methods.append(row["method"])
    tasks = list(dict.fromkeys(row["task"] for row in sp))
    lines += ["## Spearman between predicted and true KD accuracy on the unseen tasks", "",
              "| method | " + " | ".join(tasks) + " | mean |", "|---" * (len(tasks) + 2) + "|"]
    for m in methods:
        vals = [next((row["spearman"] for row in sp if row["task"] == t and row["method"] == m), float("nan"))
                for t in tasks]
        mean = statistics.fmean(vals) if vals else float("nan")
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {mean:.3f} |")
    lines += ["", f"## Searched student vs a random and the largest student under the same budget "
                  f"(MACs <= {cfg.search.max_macs:,.0f}), KD best accuracy %, seeds {list(cfg.kd.seeds)}", "",
              "| task | teacher | DaSS pick | random | largest |", "|---|---|---|---|---|"]
    for task, d in r["distill"].items():
        f = lambda w: f"{d[w]['mean']:.2f} ± {d[w]['std']:.2f}"  # noqa: E731
        lines.append(f"| {task} | {r['search'][task]['teacher_acc']:.2f} | {f('dass')} | {f('random')} | {f('largest')} |")
    lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    for name, t in r["stages"].items():
        lines.append(f"| {name} | {'reused' if t['reused'] else t['seconds']} |")
    lines.append(f"| total | {r['total_seconds']} |")
    return "\n".join(lines)
