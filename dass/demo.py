"""The embedded default end to end (docs/method.md#benchmark): ``python main.py demo --config configs/demo.yaml``.

Stages (each reuses its finished output on a second run, so an interrupted demo resumes):

1. tasks       -- generate the task family and the bundled real dataset (digits) in the numpy layout
2. database    -- train teachers, sample/remap/embed/KD-train students, record them; search candidates
3. meta-train  -- the DaSS predictor with teacher-guided adaptation
4. meta-test   -- DaSS and the baselines side by side on the demo's own unseen tasks (a smoke-scale run:
                  20 students per task cannot resolve differences between methods)
5. benchmark   -- the headline: DaSS (meta-trained over ``demo.benchmark_seeds``) against the baselines on
                  the committed benchmark database (``demo.benchmark``, its manifest verified first), with
                  bootstrap intervals, noise ceilings and paired verdicts (docs/method.md#benchmark)
6. search      -- on each unseen task, the top candidate under the MACs budget
7. distill     -- KD of the searched student, of a random student and of the largest student under the
                  same budget, for every seed of ``kd.seeds`` (mean ± sample std)

The report is printed and written to ``<demo.out>/report.md`` with ``report.json`` and per-stage wall times.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import Config, load_config, resolve_device, save_config
from .data.generate import generate_tasks
from .data.tasks import load_task
from .db import build as db
from .db.build import task_plan
from .db.records import candidate_file, load_split_records, task_file
from .db.report import format_database_report, sanity_report
from .evaluate import format_statistics, run_meta_test
from .io import read_json, write_json
from .manifest import verify_benchmark
from .metrics import STD_NOTE, mean_std
from .predictor.trainer import train_or_reuse
from .remap import remapped_student
from .search import build_candidates, run_search, search_root
from .space import Arch, SearchSpace
from .stats import ENSEMBLE
from .train.engine import distill
from .train.logit_cache import TeacherLogitCache
from .train.teachers import load_teacher_for, probe_teacher_accuracy


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
    return all(task_file(cfg.db.out, m, t).is_file() for m, t in task_plan(cfg)) and all(
        candidate_file(search_root(cfg), t).is_file() for t in cfg.tasks.meta_test)


def budget_macs(cfg: Config) -> float:
    space = SearchSpace.from_config(cfg)
    return cfg.demo.budget_frac * space.macs(space.teacher())


def run_demo(cfg: Config, workers: int = 0, log: Callable[[str], None] = print) -> dict:
    out = Path(cfg.demo.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    if cfg.search.max_macs <= 0 and cfg.demo.budget_frac > 0:
        cfg.search.max_macs = budget_macs(cfg)
    save_config(cfg, out, {"command": "demo"})   # after every change: the config that actually runs
    st = Stages(out, log)
    t_start = time.time()

    st.run("tasks", lambda: False, lambda: generate_tasks(cfg, progress=False, probe=probe_teacher_accuracy))

    def database():
        res = db.build_parallel(cfg, workers, log=log) if workers > 1 else db.build(cfg, log=log)
        build_candidates(cfg, progress=False, log=log)
        return res

    st.run("database", lambda: _all_task_files(cfg), database)
    rows = sanity_report(cfg)
    log(format_database_report(rows))

    best_ckpt = Path(cfg.meta.out) / "best.pt"
    st.run("meta-train", lambda: (Path(cfg.meta.out) / "done.json").is_file() and best_ckpt.is_file(),
           lambda: _meta_train(cfg, log))

    mt_file = out / "meta_test.json"
    st.run("meta-test", lambda: mt_file.is_file(), lambda: write_json(mt_file, _meta_test(cfg, str(best_ckpt))))
    meta_rows = read_json(mt_file)

    bench_file = out / "benchmark.json"
    if cfg.demo.benchmark:
        st.run("benchmark", lambda: bench_file.is_file(), lambda: write_json(bench_file, _benchmark(cfg, out, log)))
    bench = read_json(bench_file) if cfg.demo.benchmark else None

    search_file = out / "search.json"
    st.run("search", lambda: search_file.is_file(), lambda: write_json(search_file, _search(cfg, str(best_ckpt))))
    picks = read_json(search_file)

    distill_file = out / "distill.json"
    st.run("distill", lambda: distill_file.is_file(), lambda: write_json(distill_file, _distill(cfg, picks, log)))
    distilled = read_json(distill_file)

    report = {"spearman": meta_rows, "benchmark": bench, "search": picks, "distill": distilled, "stages": st.times,
              "total_seconds": round(time.time() - t_start, 1), "database": rows}
    text = format_report(cfg, report)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(text + "\n")
    log(text)
    return report


def _meta_train(cfg: Config, log) -> dict:
    best = train_or_reuse(cfg, load_split_records(cfg, "meta_train"), load_split_records(cfg, "meta_valid"),
                          load_split_records(cfg, "meta_test", required=False), resolve_device(cfg.run.device),
                          progress=False)
    write_json(Path(cfg.meta.out) / "done.json", {"best": str(best)})
    return {"best": str(best)}


def _meta_test(cfg: Config, ckpt: str) -> list[dict]:
    # the ablations and trained baselines meta-train in parallel, as the headline's runs do
    return run_meta_test(cfg, checkpoint=ckpt, baselines="all", progress=False, workers=_workers(cfg)).rows


def _benchmark(cfg: Config, out: Path, log) -> dict:
    """The headline comparison on the committed benchmark database (module docstring, stage 5): scored with
    the committed predictors (the same figures on every machine), then ``demo.benchmark_live_seeds``
    meta-trained here and set beside the committed runs of the same seeds."""
    bcfg = load_config(cfg.demo.benchmark, [f"meta.out={out / 'benchmark' / 'meta_train'}",
                                            f"run.device={cfg.run.device}"])
    manifest = verify_benchmark(bcfg, cfg.demo.benchmark)
    log(f"   benchmark database {bcfg.db.out}: " + ("manifest verified" if manifest else "no manifest (not verified)"))
    committed = bool(bcfg.meta.predictors) and Path(bcfg.meta.predictors).is_dir()
    if not committed:   # no predictors beside the database: meta-train the seeds here
        bcfg.meta.predictors = ""
    seeds = list(cfg.demo.benchmark_seeds) or (None if committed else [0, 1, 2, 3, 4])
    rep = run_meta_test(bcfg, baselines=cfg.demo.benchmark_methods, progress=False,
                        out=out / "benchmark" / "meta_test", seeds=seeds, workers=_workers(cfg))
    live = _live_check(cfg, bcfg, rep.stats, out, log) if committed and cfg.demo.benchmark_live_seeds else None
    return {"config": cfg.demo.benchmark, "db": bcfg.db.out, "manifest": manifest, "stats": rep.stats,
            "committed": committed, "live": live, "database_report": _read_db_report(bcfg)}


def _live_check(cfg: Config, bcfg: Config, headline: dict, out: Path, log) -> dict:
    """The trained methods of ``demo.benchmark_live_methods`` (DaSS always) meta-trained here with
    ``demo.benchmark_live_seeds``, against the committed runs of the same seeds: how far this machine's
    rounding moves one seed."""
    seeds, methods = list(cfg.demo.benchmark_live_seeds), cfg.demo.benchmark_live_methods
    live_cfg = copy.deepcopy(bcfg)
    live_cfg.meta.predictors = ""
    here = run_meta_test(live_cfg, baselines=methods, progress=False, out=out / "benchmark" / "live", seeds=seeds,
                         workers=_workers(cfg)).stats
    there = run_meta_test(bcfg, baselines=methods, progress=False, out=out / "benchmark" / "live-committed",
                          seeds=seeds).stats
    pooled = {name: {r["method"]: r["spearman"] for r in st["rows"]
                     if r["task"] == "pooled" and not r["method"].endswith(ENSEMBLE)}
              for name, st in (("here", here), ("committed", there))}
    res = {"seeds": seeds, "here": pooled["here"], "committed": pooled["committed"]}
    log(f"   live check, seeds {seeds} meta-trained here: " + _live_text(res))
    return res


def _live_text(live: dict) -> str:
    """``dass 0.654 (committed 0.654), ...``: each live method's pooled Spearman beside its committed runs'."""
    return ", ".join(f"{m} {v:.3f} (committed {live['committed'].get(m, math.nan):.3f})"
                     for m, v in live["here"].items())


def _workers(cfg: Config) -> int:
    return cfg.demo.workers or max(1, min(2, os.cpu_count() or 1))


def _read_db_report(bcfg) -> dict:
    """The benchmark's database report, as its build wrote it next to the task files."""
    root = Path(bcfg.db.out)
    rows = list(csv.DictReader((root / "report.csv").open())) if (root / "report.csv").is_file() else []
    fam = read_json(root / "family.json") if (root / "family.json").is_file() else None
    return {"rows": rows, "family": fam}


def _search(cfg: Config, ckpt: str) -> dict:
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
            mean, std = mean_std(accs)
            out[task][who] = {"accs": accs, "mean": mean, "std": std}
            log(f"   {task:>10} {who:>8}: {out[task][who]['mean']:.2f} +- {out[task][who]['std']:.2f}")
    return out


def format_report(cfg: Config, r: dict) -> str:
    lines = ["# DaSS demo report (embedded default)", "", "Every \"mean ± std\" below uses the sample standard "
             "deviation (ddof 1). Intervals are 95% bootstrap intervals over students.", ""]
    if r.get("benchmark"):
        lines += _format_benchmark(r["benchmark"])
    lines += _format_smoke(r["spearman"])
    lines += ["", f"## Searched student vs a random and the largest student under the same budget "
                  f"(MACs <= {cfg.search.max_macs:,.0f}), KD best accuracy %, seeds {list(cfg.kd.seeds)}", "",
              f"{STD_NOTE}.", "",
              "| task | teacher | DaSS pick | random | largest |", "|---|---|---|---|---|"]
    for task, d in r["distill"].items():
        f = lambda w: f"{d[w]['mean']:.2f} ± {d[w]['std']:.2f}"  # noqa: E731
        lines.append(f"| {task} | {r['search'][task]['teacher_acc']:.2f} | {f('dass')} | {f('random')} | {f('largest')} |")
    lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    for name, t in r["stages"].items():
        lines.append(f"| {name} | {'reused' if t['reused'] else t['seconds']} |")
    lines.append(f"| total | {r['total_seconds']} |")
    return "\n".join(lines)


def _format_benchmark(b: dict) -> list[str]:
    how = ("Scored with the committed predictors (meta-trained on the committed records, selected on meta-valid "
           "only), so these figures are the same on every machine." if b.get("committed") else
           "Meta-trained and meta-tested here on the committed records; models selected on meta-valid only.")
    lines = [f"## Headline: the committed benchmark database ({b['db']}, config {b['config']}; "
             f"{'manifest verified' if b['manifest'] else 'NOT verified against a manifest'})", "", how, ""]
    live = b.get("live")
    if live:
        lines += [f"Live check, seed(s) {live['seeds']} meta-trained on this machine, pooled Spearman against the "
                  f"committed runs of the same seeds: {_live_text(live)}. Another CPU's rounding moves a seed this "
                  f"much, which the two-level intervals below cover.", ""]
    fam = b["database_report"].get("family")
    if fam:
        lines += [f"Task family: {len(fam['low_macs'])} of {fam['tasks']} tasks have Spearman(accuracy, MACs) < 0.5 "
                  f"with a noise ceiling > 0.8 ({'passes' if fam['passes'] else 'does not pass'}; a third needed)."]
        if "tau" in fam:
            t = fam["tau"]
            lines += [f"The {t['shared_students']} students every task distilled: Kendall tau between two tasks' "
                      f"rankings {t['mean']:.2f} on average (min {t['min']:.2f}, max {t['max']:.2f})."]
        lines.append("")
    return lines + [format_statistics(b["stats"]), ""]


def _format_smoke(sp: list[dict]) -> list[str]:
    tasks = list(dict.fromkeys(row["task"] for row in sp))
    methods = list(dict.fromkeys(row["method"] for row in sp))
    lines = ["## Smoke scale: the demo's own freshly built database", "",
             "Spearman between predicted and true KD accuracy on the demo's unseen tasks. With this few students "
             "per task a Spearman carries an interval of about ±0.35: these figures show the pipeline runs, "
             "they do not rank the methods (the headline above does).", "",
             "| method | " + " | ".join(tasks) + " | mean |", "|---" * (len(tasks) + 2) + "|"]
    for m in methods:
        vals = [next((row["spearman"] for row in sp if row["task"] == t and row["method"] == m), float("nan"))
                for t in tasks]
        mean = statistics.fmean(vals) if vals else float("nan")
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {mean:.3f} |")
    return lines
