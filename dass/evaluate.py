"""Meta-test: DaSS and the other registered methods on the unseen tasks, with their uncertainty.

docs/method.md#evaluation. For every meta-test task each method scores the task's recorded students
(DaSS after adapting on the task's teacher). :func:`run_meta_test` writes to ``<meta.out>/meta_test/``
(or ``out``):

* ``results.csv``: task, method, spearman, pearson, kendall, top1, top5, best, n -- one row per
  (task, method), then one ``task=mean`` row per method (a method meta-trained over several seeds:
  the mean over its runs);
* ``stats.csv``: per task and pooled (``task=pooled``, the mean over tasks), each method's Spearman
  with its 95% two-level bootstrap interval (students and meta-training runs, :mod:`dass.stats`), the
  paired difference DaSS minus the method with its interval and verdict (better / worse / not resolved),
  the seed ensemble of every method with several runs (``"<method> ensemble"``), and the task's noise
  ceiling;
* ``search.csv``: under a MACs budget (``search.max_macs``, else the median MACs of the task's
  students), the true accuracy of each method's top-1 and top-5 picks against the best student
  inside the budget, with intervals and paired verdicts;
* ``stats.json`` (everything above), ``predictions.csv`` (every score) and one scatter plot per
  (task, method);
* ``<name of meta.out>_spearmanr_corr.csv``: the authors' summary (:mod:`dass.spearman_csv`).

``workers`` > 1 runs the meta-trainings in that many processes of one thread each.
``seeds``: meta-train every trained method once per meta-training seed (``meta.seed``), each into its
own folder (reused when done), and report DaSS as mean ± sample std over seeds; without seeds DaSS is
the given checkpoint and each trained baseline one run with the config's seed. With ``meta.predictors``
set, nothing is trained: the committed predictors there (``<folder>/<method>/seed<k>.pt``, all seeds or
``seeds``) are checked against this database and these settings, then scored. Models are selected on
meta-valid only (:func:`dass.predictor.trainer.train_or_reuse`).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import stats
from .config import from_dict, resolve_device, to_dict
from .db.records import TaskRecords, load_split_records
from .errors import CheckpointError, ConfigError, DataError
from .io import safe_torch_load, write_csv, write_json
from .metrics import mean_std, nanmean, nanmean_axis, rank_desc, spearman_rows
from .parallel import map_processes
from .plots import scatter_plot
from .predictor import methods as registry
from .predictor.checkpoint import data_digest, layout_of, load_predictor, run_mismatch
from .predictor.inference import evaluate_task
from .predictor.trainer import train_or_reuse
from .spearman_csv import spearman_csv_path, write_spearman_csv

METRICS = ("spearman", "pearson", "kendall", "top1", "top5", "best")
REFERENCE = "dass"


@dataclass
class MetaTestReport:
    rows: list[dict]                         # one per (task, method)
    stats: dict = field(default_factory=dict)  # intervals, verdicts, ceilings, search figures


def parse_methods(text: str, cfg) -> tuple[list[str], bool]:
    """``--baselines`` -> (methods, explicit). ``dass`` always comes first."""
    known = [m for m in registry.available(cfg) if m != REFERENCE]
    t = (text or "").strip()
    if t == "all":
        return [REFERENCE, *known], False
    if t in ("none", ""):
        return [REFERENCE], True
    names = [x.strip() for x in t.split(",") if x.strip()]
    bad = [x for x in names if x not in known and x != REFERENCE]
    if bad:
        raise ConfigError(f"--baselines: unknown method '{bad[0]}'; known for this config: {', '.join(known)}")
    return [REFERENCE, *[x for x in names if x != REFERENCE]], True


def _f(v, nd=3) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


# --------------------------------------------------------------------------------------------- #
# the trained methods
# --------------------------------------------------------------------------------------------- #

def _lacks_features(cfg, name: str, tests: list[TaskRecords], splits, explicit: bool) -> bool:
    """True (skip, with a note) when a D-input method meets records without dataset features."""
    if not registry.needs_dataset_features(cfg, name):
        return False
    if all(r.dataset_features is not None for r in tests + splits[0] + splits[1]):
        return False
    if explicit:
        raise DataError(f"method '{name}' needs dataset features, which the database lacks; rebuild it with "
                        f"dataset features")
    print(f"note: skipping '{name}': the database has no dataset features", file=sys.stderr)
    return True


def _train_one(cfg_dict: dict) -> str:
    """One meta-training in a worker process (:mod:`dass.parallel`: one thread, the workers share the cores)."""
    rc = from_dict(cfg_dict)
    tasks = [load_split_records(rc, m) for m in ("meta_train", "meta_valid", "meta_test")]
    return str(train_or_reuse(rc, *tasks, resolve_device(rc.run.device), progress=False))


def train_all(configs: list, tests, device, progress: bool, workers: int) -> list[Path]:
    """Meta-train every config (reused when done); over ``workers`` spawned processes when > 1."""
    if workers <= 1 or len(configs) <= 1:
        train, valid = load_split_records(configs[0], "meta_train"), load_split_records(configs[0], "meta_valid")
        return [train_or_reuse(c, train, valid, tests, device, progress) for c in configs]
    return [Path(p) for p in map_processes(_train_one, [to_dict(c) for c in configs], workers)]


def check_committed(cfg, name: str, path: Path, train, valid, tests) -> None:
    """A committed predictor must have been meta-trained on this database's content with this method's settings
    (the fingerprint, layout and data digest its checkpoint stores)."""
    ck = safe_torch_load(path, cfg.run.allow_legacy_pickle, what="committed predictor")
    seed = ((ck.get("fingerprint") or {}).get("meta") or {}).get("seed") if isinstance(ck, dict) else None
    why = run_mismatch(ck, registry.run_config(cfg, name, seed), layout_of([*train, *valid, *tests]),
                       data_digest([*train, *valid]))
    if why is not None:
        raise CheckpointError(f"committed predictor {path} was not meta-trained on this database with this config "
                              f"({why}); re-run meta-test with --meta-seeds and meta.predictors='' (then commit "
                              f"its runs: bench/commit_predictors.py)")


def committed_predictors(cfg, names: Sequence[str], tests, seeds, explicit: bool, device) -> dict[str, list]:
    """``{name: [LoadedPredictor, ...]}`` from ``meta.predictors`` (every seed there, or ``seeds``), verified."""
    train, valid = load_split_records(cfg, "meta_train"), load_split_records(cfg, "meta_valid")
    out = {}
    for name in names:
        if not registry.get(name).trained:
            continue
        paths = registry.committed_runs(cfg, name, seeds or None)
        if not paths:
            if explicit:
                raise CheckpointError(f"meta.predictors={cfg.meta.predictors} holds no predictor of '{name}' "
                                      f"(<folder>/{name}/seed<k>.pt); drop it from --baselines or train it")
            print(f"note: skipping '{name}': no committed predictor under {cfg.meta.predictors}", file=sys.stderr)
            continue
        for p in paths:
            check_committed(cfg, name, p, train, valid, tests)
        out[name] = [load_predictor(p, device, cfg.run.allow_legacy_pickle) for p in paths]
    return out


def trained_predictors(cfg, names: Sequence[str], tests, checkpoint: Optional[Path], seeds, explicit: bool,
                       device, progress: bool, workers: int = 1) -> dict[str, list]:
    """``{name: [LoadedPredictor, ...]}``, one entry per meta-training seed (or one run); the committed ones
    when ``meta.predictors`` is set."""
    if cfg.meta.predictors:
        return committed_predictors(cfg, names, tests, seeds, explicit, device)
    out: dict[str, list] = {}
    jobs: list[tuple[str, object]] = []
    splits = None
    for name in names:
        if not registry.get(name).trained:
            continue
        if name == REFERENCE and not seeds:
            out[name] = [load_predictor(checkpoint, device, cfg.run.allow_legacy_pickle)]
            continue
        splits = splits or (load_split_records(cfg, "meta_train"), load_split_records(cfg, "meta_valid"))
        if _lacks_features(cfg, name, tests, splits, explicit):
            continue
        for seed in seeds or [None]:
            jobs.append((name, registry.run_config(cfg, name, seed)))
            if progress:
                print(f"[meta-test] {name}: meta-training into {jobs[-1][1].meta.out} (reused when done)",
                      file=sys.stderr)
    if jobs:
        paths = train_all([c for _, c in jobs], tests, device, progress, workers)
        for (name, _), path in zip(jobs, paths):
            out.setdefault(name, []).append(load_predictor(path, device))
    return out


def method_scores(name: str, rec: TaskRecords, predictors: dict, cfg) -> np.ndarray:
    """``runs x N`` scores of one method on one task (one row for a proxy)."""
    if name in predictors:
        rows = [registry.score(name, rec, predictor=p) for p in predictors[name]]
    else:
        rows = [registry.score(name, rec, seed=cfg.run.seed)]
    return torch.stack([r.detach().double().cpu().flatten() for r in rows]).numpy()


# --------------------------------------------------------------------------------------------- #
# statistics
# --------------------------------------------------------------------------------------------- #

def search_budget(cfg, rec: TaskRecords) -> float:
    """The MACs budget of the search figures: ``search.max_macs``, else the task's median student MACs."""
    return float(cfg.search.max_macs) if cfg.search.max_macs > 0 else float(rec.macs.median())


def _search_rows(cfg, rec, truth, scores: dict, num: int) -> list[dict]:
    budget = search_budget(cfg, rec)
    within = rec.macs.numpy() <= budget
    if cfg.search.max_params > 0:
        within &= rec.params.numpy() <= cfg.search.max_params
    rows = []
    for k in (1, 5):
        boot = stats.search_bootstrap(truth, scores, within, k, num=num, seed=cfg.run.seed)
        oracle, oracle_s = boot.pop("oracle")
        for m, (point, samp) in boot.items():
            lo, hi = stats.interval(samp)
            row = {"task": rec.task, "k": k, "method": m, "budget_macs": budget, "inside": int(within.sum()),
                   "true_acc": point, "lo": lo, "hi": hi, "oracle": oracle, "regret": oracle - point}
            if m != REFERENCE:
                dlo, dhi = stats.interval(boot[REFERENCE][1] - samp)
                row.update(diff=boot[REFERENCE][0] - point, diff_lo=dlo, diff_hi=dhi, verdict=stats.verdict(dlo, dhi))
            rows.append(row)
    return rows


def statistics_of(cfg, tests: list[TaskRecords], scores: dict, num: int = stats.NUM_RESAMPLES) -> dict:
    """Intervals, paired verdicts (DaSS minus each method), noise ceilings and search figures."""
    tasks, search, ceilings = [], [], {}
    for rec in tests:
        keep = torch.isfinite(rec.label).numpy()
        truth = rec.label.double().numpy()[keep]
        sc = {m: s[:, keep] for m, s in scores[rec.task].items()}
        tasks.append(stats.TaskScores(rec.task, truth, sc))
        if rec.seed_label is not None:
            ceilings[rec.task] = stats.noise_ceiling(rec.seed_label.double().numpy()[:, keep])
        search += _search_rows(cfg, rec.subset(np.flatnonzero(keep).tolist()), truth, sc, num)
    several = [m for m, s in scores[tests[0].task].items() if stats.as_rows(s).shape[0] > 1]
    boot = stats.paired_bootstrap(tasks, num=num, seed=cfg.run.seed, ensembles=several)
    rows = stats.comparison_rows(boot, REFERENCE)
    for r in rows:
        r.update(ceilings.get(r["task"], {}))
    runs = np.stack([[spearman_rows(run, t.truth)[0] for run in stats.as_rows(t.scores[REFERENCE])]
                     for t in tasks])                                   # tasks x runs
    per_run = nanmean_axis(runs, axis=0)
    mean, std = mean_std(per_run)
    dass = {"runs": len(per_run), "pooled_per_run": per_run.tolist(), "mean": mean, "std": std}
    runs = {m: int(stats.as_rows(s).shape[0]) for m, s in scores[tests[0].task].items()}
    return {"resamples": num, "level": stats.LEVEL, "two_level": True, "runs": runs, "rows": rows, "search": search,
            "ceilings": ceilings, "dass_seeds": dass}


# --------------------------------------------------------------------------------------------- #
# the run
# --------------------------------------------------------------------------------------------- #

def run_meta_test(cfg, checkpoint: Optional[str | Path] = None, baselines: str = "all", progress: bool = True,
                  out: Optional[str | Path] = None, seeds: Optional[Sequence[int]] = None,
                  resamples: int = stats.NUM_RESAMPLES, workers: int = 1) -> MetaTestReport:
    device = resolve_device(cfg.run.device)
    tests = load_split_records(cfg, "meta_test")
    if not tests:
        raise ConfigError("config key 'tasks.meta_test' lists no task; nothing to evaluate")
    ckpt = Path(checkpoint) if checkpoint else Path(cfg.meta.out) / "best.pt"
    if not seeds and not cfg.meta.predictors and not ckpt.is_file():
        raise CheckpointError(f"predictor checkpoint {ckpt} does not exist; run main.py meta-train first or pass "
                              f"--checkpoint")
    names, explicit = parse_methods(baselines, cfg)
    predictors = trained_predictors(cfg, names, tests, ckpt, list(seeds or []), explicit, device, progress, workers)
    names = [m for m in names if not registry.get(m).trained or m in predictors]

    out = Path(out) if out else Path(cfg.meta.out) / "meta_test"
    rows, preds, scores = [], [], {}
    for rec in tests:
        scores[rec.task] = {m: method_scores(m, rec, predictors, cfg) for m in names}
        for m in names:
            rows.append(_result_row(rec, m, scores[rec.task][m]))
            preds += _prediction_rows(rec, m, scores[rec.task][m])
            s = scores[rec.task][m][0]
            scatter_plot(out / f"{rec.task}_{m}.svg", rec.label.tolist(), s.tolist(),
                        title=f"{rec.task} / {m}: Spearman {_f(rows[-1]['spearman'])}",
                        ylabel="predicted accuracy (%)" if m in predictors else f"{m} score",
                        highlight=int(rank_desc(s)[0]))
    means = [{"task": "mean", "method": m, **{k: nanmean([r[k] for r in rows if r["method"] == m]) for k in METRICS},
              "n": sum(r["n"] for r in rows if r["method"] == m)} for m in names]
    st = statistics_of(cfg, tests, scores, resamples)
    write_csv(out / "results.csv", rows + means)
    write_csv(out / "predictions.csv", preds)
    write_csv(out / "stats.csv", st["rows"])
    write_csv(out / "search.csv", st["search"])
    write_json(out / "stats.json", st)
    # the authors' summary beside ours: meta-valid and meta-test Spearman per method
    valid = [_result_row(rec, m, method_scores(m, rec, predictors, cfg))
             for rec in load_split_records(cfg, "meta_valid", required=False) for m in names]
    write_spearman_csv(spearman_csv_path(out, cfg.meta.out), valid, rows)
    return MetaTestReport(rows, st)


def _result_row(rec: TaskRecords, name: str, runs: np.ndarray) -> dict:
    per = [evaluate_task(torch.from_numpy(r), rec) for r in runs]
    mean = lambda k: nanmean([p[k] for p in per])  # noqa: E731
    return {"task": rec.task, "method": name, "spearman": mean("spearman"), "pearson": mean("pearson"),
            "kendall": mean("kendall"), "top1": mean("top1_acc"), "top5": mean("top5_acc"),
            "best": per[0]["best_acc"], "n": per[0]["n"]}


def _prediction_rows(rec: TaskRecords, name: str, runs: np.ndarray) -> list[dict]:
    s = runs.mean(0)
    return [{"task": rec.task, "method": name, "net_index": rec.net_index[i], "arch": str(rec.archs[i]),
             "score": float(s[i]), "true": float(rec.label[i])} for i in range(len(rec))]


# --------------------------------------------------------------------------------------------- #
# printing
# --------------------------------------------------------------------------------------------- #

def format_results(rows: list[dict]) -> str:
    """One line per method: Spearman per task, then the means over tasks of every metric."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    names = list(dict.fromkeys(r["method"] for r in rows))
    w = max(8, *(len(m) for m in names))
    lines = [f"{'method':<{w}} " + " ".join(f"{t[:10]:>10}" for t in tasks) + "  "
             + " ".join(f"{k:>7}" for k in ("rho", "r", "tau", "top1", "top5", "best"))]
    for name in names:
        per = {r["task"]: r for r in rows if r["method"] == name}
        mean = {k: nanmean([per[t][k] for t in tasks if t in per]) for k in METRICS}
        line = f"{name:<{w}} " + " ".join(f"{_f(per[t]['spearman']) if t in per else '':>10}" for t in tasks)
        line += "  " + " ".join(f"{_f(mean[k]):>7}" for k in ("spearman", "pearson", "kendall"))
        line += " " + " ".join(f"{_f(mean[k], 2):>7}" for k in ("top1", "top5", "best"))
        lines.append(line)
    return "\n".join(lines)


def _ci(lo, hi, nd=3) -> str:
    return f"[{_f(lo, nd)}, {_f(hi, nd)}]"


def format_statistics(st: dict) -> str:
    """Markdown tables: pooled and per-task Spearman with intervals, ceilings and verdicts; the search."""
    d = st["dass_seeds"]
    runs = ", ".join(f"{m} {n}" for m, n in st.get("runs", {}).items() if n > 1)
    lines = [f"Spearman with {int(100 * st['level'])}% two-level bootstrap intervals ({st['resamples']} paired "
             f"resamples of the students, and of the meta-training runs of every trained method"
             + (f": {runs} runs" if runs else "") + "); 'DaSS - method' is the paired difference, a verdict only "
             f"where its interval excludes 0; '<method> ensemble' is the seed ensemble (mean standardised score "
             f"of the runs). DaSS: {d['runs']} meta-training run(s), pooled Spearman {d['mean']:.3f}"
             + (f" ± {d['std']:.3f} (sample std over seeds)" if d["runs"] > 1 else ""), "",
             "| task | ceiling (seed ρ) | method | Spearman [95% CI] | DaSS − method [95% CI] | verdict |",
             "|---|---|---|---|---|---|"]
    for r in sorted(st["rows"], key=lambda r: (r["task"] != "pooled", r["task"])):
        ceil = f"{_f(r['ceiling'])} ({_f(r['seed_rho'])})" if "ceiling" in r else ""
        diff = f"{_f(r['diff'])} {_ci(r['diff_lo'], r['diff_hi'])}" if "diff" in r else ""
        lines.append(f"| {r['task']} | {ceil} | {r['method']} | {_f(r['spearman'])} {_ci(r['lo'], r['hi'])} | "
                     f"{diff} | {r.get('verdict', '')} |")
    lines += ["", "Search under a MACs budget: true accuracy (%) of the top-k picks; oracle = best student inside "
                  "the budget", "", "| task | k | budget MACs (inside) | method | true acc [95% CI] | oracle | "
                  "DaSS − method [95% CI] | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in st["search"]:
        diff = f"{_f(r['diff'], 2)} {_ci(r['diff_lo'], r['diff_hi'], 2)}" if "diff" in r else ""
        lines.append(f"| {r['task']} | {r['k']} | {r['budget_macs']:,.0f} ({r['inside']}) | {r['method']} | "
                     f"{_f(r['true_acc'], 2)} {_ci(r['lo'], r['hi'], 2)} | {_f(r['oracle'], 2)} | {diff} | "
                     f"{r.get('verdict', '')} |")
    return "\n".join(lines)
