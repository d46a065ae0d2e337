"""Meta-test: DaSS and the baselines on the unseen (meta-test) tasks, side by side (issue 6).

For every meta-test task the DaSS predictor adapts on the task's teacher and predicts all recorded
students; each baseline scores the same students. :func:`run_meta_test` writes to
``<meta.out>/meta_test/`` (or ``out``):

* ``results.csv``: task, method, spearman, pearson, kendall, top1, top5, best, n -- one row per
  (task, method), then one ``task=mean`` row per method (means over tasks);
* ``predictions.csv``: task, method, net_index, arch, score, true -- every score behind the table;
* ``<task>_<method>.svg``: score vs true accuracy, the top-1 pick in red;
* ``<name of meta.out>_spearmanr_corr.csv``: the authors' summary (:mod:`dass.spearman_csv`);

and returns the per-task rows (no mean rows). ``baselines="all"`` adds random, macs, params, diswot
and the trained ones (metad2a and the DaSS ablations; each is meta-trained into
``<meta.out>/baselines/<name>`` on first use and reused afterwards); ``"none"`` evaluates DaSS alone;
or a comma-separated list of names. ``top1``/``top5``: best true accuracy among the 1/5 highest-scored
students; ``best``: best true accuracy in the set.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

from .config import resolve_device
from .errors import CheckpointError, ConfigError, DataError
from .io import write_csv

METRICS = ("spearman", "pearson", "kendall", "top1", "top5", "best")


def parse_methods(text: str, cfg) -> tuple[list[str], bool]:
    """``--baselines`` -> (methods, explicit). ``dass`` always comes first."""
    from .baselines import STATIC, trained_variants

    known = [*STATIC, *trained_variants(cfg)]
    t = (text or "").strip()
    if t == "all":
        return ["dass", *known], False
    if t in ("none", ""):
        return ["dass"], True
    names = [x.strip() for x in t.split(",") if x.strip()]
    bad = [x for x in names if x not in known and x != "dass"]
    if bad:
        raise ConfigError(f"--baselines: unknown method '{bad[0]}'; known for this config: {', '.join(known)}")
    return ["dass", *[x for x in names if x != "dass"]], True


def _f(v, nd=3) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def run_meta_test(cfg, checkpoint: Optional[str | Path] = None, baselines: str = "all", progress: bool = True,
                  out: Optional[str | Path] = None) -> list[dict]:
    from .baselines import STATIC, needs_dataset_features, score, variant_config
    from .meta import evaluate_task, load_predictor, load_tasks, train_or_reuse
    from .metrics import nanmean, rank_desc
    from .plots import scatter_svg
    from .spearman_csv import spearman_csv_path, write_spearman_csv

    device = resolve_device(cfg.run.device)
    tests = load_tasks(cfg, "meta_test")
    if not tests:
        raise ConfigError("config key 'tasks.meta_test' lists no task; nothing to evaluate")
    ckpt = Path(checkpoint) if checkpoint else Path(cfg.meta.out) / "best.pt"
    if not ckpt.is_file():
        raise CheckpointError(f"predictor checkpoint {ckpt} does not exist; run main.py meta-train first or pass "
                              f"--checkpoint")
    methods, explicit = parse_methods(baselines, cfg)
    have_feats = all(r.dataset_features is not None for r in tests)

    # trained predictors: DaSS itself, then the trained baselines/ablations (trained on demand)
    predictors = {"dass": load_predictor(ckpt, device)}
    splits = None
    for name in methods:
        if name == "dass" or name in STATIC:
            continue
        needs_d = needs_dataset_features(cfg, name)
        if needs_d and not have_feats:
            if explicit:
                raise DataError(f"baseline '{name}' needs dataset features, which the meta-test records lack; "
                                f"rebuild the database with dataset features")
            print(f"note: skipping '{name}': the database has no dataset features", file=sys.stderr)
            continue
        vcfg = variant_config(cfg, name)
        if splits is None:
            splits = (load_tasks(cfg, "meta_train"), load_tasks(cfg, "meta_valid"))
        if needs_d and any(r.dataset_features is None for r in splits[0] + splits[1]):
            if explicit:
                raise DataError(f"baseline '{name}' needs dataset features, which the meta-train/valid records "
                                f"lack; rebuild the database with dataset features")
            print(f"note: skipping '{name}': the database has no dataset features", file=sys.stderr)
            continue
        if progress:
            print(f"[meta-test] {name}: meta-training into {vcfg.meta.out} (reused when done)", file=sys.stderr)
        best = train_or_reuse(vcfg, splits[0], splits[1], tests, device, progress)
        predictors[name] = load_predictor(best, device)
    methods = [m for m in methods if m in STATIC or m in predictors]

    out = Path(out) if out else Path(cfg.meta.out) / "meta_test"

    def scores(name, rec):
        if name in predictors:
            model, lrs, info = predictors[name]
            return score(name, rec, model=model, inner_lrs=lrs, meta_info=info)
        return score(name, rec, seed=cfg.run.seed)

    rows, preds = [], []
    for rec in tests:
        for name in methods:
            s = scores(name, rec)
            r = evaluate_task(s, rec)
            rows.append({"task": rec.task, "method": name, "spearman": r["spearman"], "pearson": r["pearson"],
                         "kendall": r["kendall"], "top1": r["top1_acc"], "top5": r["top5_acc"],
                         "best": r["best_acc"], "n": r["n"]})
            s = s.double()
            for i in range(len(rec)):
                preds.append({"task": rec.task, "method": name, "net_index": rec.net_index[i],
                              "arch": str(rec.archs[i]), "score": float(s[i]), "true": float(rec.best_acc[i])})
            unit = "predicted accuracy (%)" if name in predictors else f"{name} score"
            scatter_svg(out / f"{rec.task}_{name}.svg", rec.best_acc.tolist(), s.tolist(),
                        title=f"{rec.task} / {name}: Spearman {_f(r['spearman'])}", ylabel=unit,
                        highlight=int(rank_desc(s)[0]))
    means = [{"task": "mean", "method": name,
              **{k: nanmean([r[k] for r in rows if r["method"] == name]) for k in METRICS},
              "n": sum(r["n"] for r in rows if r["method"] == name)} for name in methods]
    write_csv(out / "results.csv", rows + means)
    write_csv(out / "predictions.csv", preds)
    # the authors' summary beside ours: meta-valid and meta-test Spearman per method
    valid = [{"task": rec.task, "method": name, "spearman": evaluate_task(scores(name, rec), rec)["spearman"]}
             for rec in load_tasks(cfg, "meta_valid", required=False) for name in methods]
    write_spearman_csv(spearman_csv_path(out, cfg.meta.out), valid, rows)
    return rows


def format_table(rows: list[dict]) -> str:
    """One line per method: Spearman per task, then the means over tasks of every metric."""
    from .metrics import nanmean

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    w = max(8, *(len(m) for m in methods))
    lines = [f"{'method':<{w}} " + " ".join(f"{t[:10]:>10}" for t in tasks) + "  "
             + " ".join(f"{k:>7}" for k in ("rho", "r", "tau", "top1", "top5", "best"))]
    for name in methods:
        per = {r["task"]: r for r in rows if r["method"] == name}
        mean = {k: nanmean([per[t][k] for t in tasks if t in per]) for k in METRICS}
        line = f"{name:<{w}} " + " ".join(f"{_f(per[t]['spearman']) if t in per else '':>10}" for t in tasks)
        line += "  " + " ".join(f"{_f(mean[k]):>7}" for k in ("spearman", "pearson", "kendall"))
        line += " " + " ".join(f"{_f(mean[k], 2):>7}" for k in ("top1", "top5", "best"))
        lines.append(line)
    return "\n".join(lines)
