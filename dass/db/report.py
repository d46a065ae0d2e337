"""The database report: is the ground truth precise, and does the best student depend on the task?

Per task (docs/method.md#benchmark): the teacher's accuracy over chance, the students' accuracy spread,
Spearman of accuracy against MACs and params, and the noise ceiling (seed rho, then the Spearman-Brown
ceiling of the mean label). Over the family: how many tasks fall below Spearman(accuracy, MACs) 0.5 with
a ceiling above 0.8, and the Kendall tau between tasks' rankings of the shared students
(``report.csv``, ``family.json``).
"""
from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config
from ..errors import CheckpointError, DassError
from ..io import safe_torch_load, write_csv
from ..metrics import kendall
from ..metrics import spearman_rows
from ..stats import noise_ceiling
from .build import task_plan, work_dir
from .records import TaskRecords, load_records


def _chance(cfg: Config, mode: str, task: str, rec: TaskRecords) -> float:
    """Chance accuracy (percent) from the class count the build stored, else from the dataset features
    (one row per class; a committed database keeps those but not its work files); NaN when unknown."""
    p = work_dir(cfg) / mode / task / "teacher.pt"
    try:
        k = int(safe_torch_load(p, what="teacher record").get("num_classes", 0)) if p.is_file() else 0
    except (CheckpointError, AttributeError, TypeError, ValueError):
        k = 0
    if not k and rec.dataset_features is not None:
        k = int(rec.dataset_features.shape[0])
    return 100.0 / k if k else math.nan


def sanity_report(cfg: Config, modes: Optional[list[str]] = None, write: bool = True) -> list[dict]:
    """Per task (docs/method.md#benchmark): the spread of student accuracies, how far the teacher is above
    chance, Spearman(accuracy, MACs) and (accuracy, params), and with several KD seeds the noise ceiling
    (``seed_rho``: Spearman between two seeds; ``ceiling``: of their mean). Written to ``report.csv``
    when ``write`` (a build); a report of an existing database only prints, so a committed or downloaded
    database is never modified."""
    rows = []
    for mode, task in task_plan(cfg, modes):
        try:
            rec = load_records(cfg.db.out, mode, task)
        except DassError:
            continue
        acc = rec.best_acc
        rho = lambda x: float(spearman_rows(acc.numpy(), x.numpy())[0]) if acc.std() > 0 else math.nan  # noqa: E731
        chance = _chance(cfg, mode, task, rec)
        nc = noise_ceiling(rec.seed_best_acc.numpy()) if rec.seed_best_acc is not None else {}
        rows.append({"mode": mode, "task": task, "students": len(rec), "teacher_acc": round(rec.teacher.acc, 2),
                     "x_chance": round(rec.teacher.acc / chance, 2) if chance == chance else "",
                     "acc_mean": round(float(acc.mean()), 2), "acc_std": round(float(acc.std()), 2),
                     "acc_min": round(float(acc.min()), 2), "acc_max": round(float(acc.max()), 2),
                     "spearman_acc_macs": round(rho(rec.macs), 3),
                     "spearman_acc_params": round(rho(rec.params), 3),
                     "seed_rho": round(nc["seed_rho"], 3) if nc else "",
                     "ceiling": round(nc["ceiling"], 3) if nc else ""})
    if rows and write:
        write_csv(Path(cfg.db.out) / "report.csv", rows)
    return rows


def family_summary(cfg: Config, rows: list[dict], modes: Optional[list[str]] = None) -> dict:
    """Does the best student depend on the task? (docs/method.md#benchmark)

    ``low_macs``: tasks with Spearman(accuracy, MACs) < 0.5 while their ceiling is > 0.8; the family passes
    when they are at least a third of its tasks. ``tau``: pairwise Kendall tau between tasks' rankings of
    the ``db.shared_students`` architectures every task distilled (mean, min, max over task pairs).
    """
    low = [r["task"] for r in rows if r["spearman_acc_macs"] < 0.5 and r["ceiling"] != "" and r["ceiling"] > 0.8]
    out = {"tasks": len(rows), "low_macs": low, "passes": bool(rows) and 3 * len(low) >= len(rows)}
    k = cfg.db.shared_students
    accs = {}
    for mode, task in task_plan(cfg, modes):
        if k < 2:
            break
        try:
            accs[task] = load_records(cfg.db.out, mode, task, with_teacher=False).best_acc[:k].numpy()
        except DassError:
            continue
    taus = [kendall(accs[a], accs[b]) for a, b in combinations(accs, 2)]
    taus = [t for t in taus if t == t]
    if taus:
        out["tau"] = {"pairs": len(taus), "mean": float(np.mean(taus)), "min": float(np.min(taus)),
                      "max": float(np.max(taus)), "shared_students": k}
    return out


def format_family(summary: dict) -> str:
    n, low = summary["tasks"], summary["low_macs"]
    lines = [f"[build-db] task family: {len(low)} of {n} tasks have Spearman(accuracy, MACs) < 0.5 with a noise "
             f"ceiling > 0.8 ({'passes' if summary['passes'] else 'does NOT pass'}: at least a third needed)"]
    if "tau" in summary:
        t = summary["tau"]
        lines.append(f"[build-db] the {t['shared_students']} shared students ranked by {t['pairs']} task pairs: "
                     f"Kendall tau mean {t['mean']:.2f} (min {t['min']:.2f}, max {t['max']:.2f})")
    return "\n".join(lines)


def format_database_report(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    width = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    line = lambda r: "  ".join(str(r.get(k, "")).ljust(width[k]) for k in keys)  # noqa: E731
    return "\n".join([line({k: k for k in keys})] + [line(r) for r in rows])
