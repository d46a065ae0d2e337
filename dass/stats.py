"""Uncertainty of ranking figures: bootstrap intervals, paired comparisons, noise ceilings.

docs/method.md#evaluation. Every ranking figure the project reports comes with a 95% interval, and a
difference between two methods is called "better" or "worse" only when its paired interval excludes 0;
otherwise it is "not resolved".

* **Two-level bootstrap: students and meta-training runs.** A resample draws a task's students with
  replacement, and every method is scored on the *same* students (a paired bootstrap), so what two methods
  share (the task, the students drawn) cancels in their difference. A trained method is meta-trained
  once per seed; one seed scores very differently from the next (meta-training amplifies rounding into
  other selected checkpoints), so a resample also draws that method's runs with replacement -- one draw
  per resample for all tasks, since a run is one model -- and its figure is the mean over the drawn runs.
  The interval then covers the seed-to-seed spread, and a verdict cannot rest on a lucky seed. Pooled
  over tasks, each resample draws every task's students independently (a stratified bootstrap) and the
  figure is the mean over tasks. Intervals are percentile intervals. :func:`bootstrap_spearman` is
  cross-checked against ``scipy.stats.bootstrap`` in the tests.
* **Seed ensemble.** The runs of a trained method combined into one ranking: each run's scores
  standardised over the task's students, then averaged (:func:`standardised`); its resamples average the
  drawn runs' standardised scores before ranking.
* **Noise ceiling.** A student's label is the mean of its accuracy over ``k`` KD seeds. The Spearman
  between two seeds, ``r``, is the labels' split-half reliability; the mean of ``k`` seeds has reliability
  ``k r / (1 + (k - 1) r)`` (Spearman-Brown), and no predictor can be expected to correlate with the
  noisy mean better than its square root: that is the task's *ceiling*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
from .metrics import nanmean, nanmean_axis, rank_desc_rows, spearman_rows

LEVEL = 0.95
NUM_RESAMPLES = 2000


def as_rows(a: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(a, dtype=np.float64))


def resample_indices(n: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num x n`` student indices drawn with replacement."""
    return rng.integers(0, n, size=(num, n))


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaN resamples -- constant rows -- are left out)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    """``better`` / ``worse`` when the paired interval excludes 0, else ``not resolved``."""
    if math.isnan(lo) or math.isnan(hi):
        return "not resolved"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "not resolved"


def bootstrap_spearman(scores, truth, num: int = NUM_RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """``(rho, lo, hi)``: the Spearman of ``scores`` against ``truth`` and its bootstrap interval."""
    s, t = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
    idx = resample_indices(len(t), num, np.random.default_rng(seed))
    rho = float(spearman_rows(s, t)[0])
    return (rho, *interval(spearman_rows(s[idx], t[idx]), level))


# --------------------------------------------------------------------------------------------- #
# many methods on many tasks, paired
# --------------------------------------------------------------------------------------------- #

@dataclass
class TaskScores:
    """One task: the true labels and every method's scores. A method with several runs (DaSS meta-trained
    with several seeds) has a ``runs x n`` array; its figure is the mean Spearman over runs."""
    task: str
    truth: np.ndarray
    scores: Mapping[str, np.ndarray]


ENSEMBLE = " ensemble"     # the seed ensemble of method m is reported as method "m ensemble"


def standardised(runs) -> np.ndarray:
    """Each row (one run's scores over the students) to mean 0 and sample std 1; a constant row to zeros."""
    r = as_rows(runs)
    sd = r.std(axis=-1, ddof=1, keepdims=True) if r.shape[-1] > 1 else np.zeros(r.shape[:-1] + (1,))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, (r - r.mean(axis=-1, keepdims=True)) / np.where(sd > 0, sd, 1.0), 0.0)


def _run_draws(n_runs: int, num: int, rng: np.random.Generator, runs: bool) -> Optional[np.ndarray]:
    """``num x n_runs`` run indices drawn with replacement, or None (one run, or runs held fixed)."""
    return rng.integers(0, n_runs, size=(num, n_runs)) if runs and n_runs > 1 else None


def _over_runs(per_run: np.ndarray, draws: Optional[np.ndarray]) -> np.ndarray:
    """``runs x B`` figures -> ``B``: the mean over each resample's drawn runs (over all runs without draws)."""
    if draws is None:
        return nanmean_axis(per_run, axis=0)
    return nanmean_axis(per_run[draws.T, np.arange(per_run.shape[1])[None, :]], axis=0)


def _ensemble_samples(z: np.ndarray, truth: np.ndarray, idx: np.ndarray, draws: Optional[np.ndarray]) -> np.ndarray:
    """Spearman of the seed ensemble per resample: the drawn runs' standardised scores averaged, then ranked
    on the resampled students."""
    ens = np.broadcast_to(z.mean(axis=0), idx.shape[:1] + z.shape[1:]) if draws is None else z[draws].mean(axis=1)
    return spearman_rows(np.take_along_axis(ens, idx, axis=1), truth[idx])


def paired_bootstrap(tasks: Sequence[TaskScores], num: int = NUM_RESAMPLES, seed: int = 0,
                     ensembles: Sequence[str] = (), runs: bool = True) -> dict:
    """Spearman of every method per task and pooled (mean over tasks), each with its bootstrap samples:
    students and, with ``runs``, meta-training runs resampled (the module docstring's two-level bootstrap).

    ``ensembles`` names methods whose seed ensemble is reported too, as ``"<method> ensemble"``. Returns
    ``{"point": {(task, method): rho}, "samples": {(task, method): array[num]}}``; the pooled entries use
    task ``"pooled"``. Every method sees the same students of a task in a resample.
    """
    rng = np.random.default_rng(seed)
    methods = list(tasks[0].scores) if tasks else []
    draws = {m: _run_draws(as_rows(tasks[0].scores[m]).shape[0], num, rng, runs) for m in methods}
    point, samples = {}, {}
    for ts in tasks:
        truth = np.asarray(ts.truth, np.float64)
        idx = resample_indices(len(truth), num, rng)
        for m in methods:
            rs = as_rows(ts.scores[m])
            point[(ts.task, m)] = nanmean(spearman_rows(rs, np.broadcast_to(truth, rs.shape)))
            per_run = np.stack([spearman_rows(r[idx], truth[idx]) for r in rs])          # runs x B
            samples[(ts.task, m)] = _over_runs(per_run, draws[m])
        for m in ensembles:
            z = standardised(ts.scores[m])
            point[(ts.task, m + ENSEMBLE)] = float(spearman_rows(z.mean(axis=0), truth)[0])
            samples[(ts.task, m + ENSEMBLE)] = _ensemble_samples(z, truth, idx, draws[m])
    for m in [*methods, *[e + ENSEMBLE for e in ensembles]]:
        point[("pooled", m)] = nanmean([point[(ts.task, m)] for ts in tasks])
        samples[("pooled", m)] = nanmean_axis(np.stack([samples[(ts.task, m)] for ts in tasks]), axis=0)
    return {"point": point, "samples": samples}


def comparison_rows(boot: dict, reference: str, level: float = LEVEL) -> list[dict]:
    """One row per (task, method): rho with its interval; for every method other than ``reference``, the
    paired difference ``reference - method`` with its interval and verdict (from the reference's side)."""
    rows = []
    for (task, m), rho in boot["point"].items():
        lo, hi = interval(boot["samples"][(task, m)], level)
        row = {"task": task, "method": m, "spearman": rho, "lo": lo, "hi": hi}
        if m != reference:
            diff = boot["samples"][(task, reference)] - boot["samples"][(task, m)]
            dlo, dhi = interval(diff, level)
            row.update(diff=boot["point"][(task, reference)] - rho, diff_lo=dlo, diff_hi=dhi,
                       verdict=verdict(dlo, dhi))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- #
# noise ceiling of multi-seed labels
# --------------------------------------------------------------------------------------------- #

def seed_agreement(per_seed) -> float:
    """Mean pairwise Spearman between the KD seeds' accuracies (``seeds x students``); NaN for one seed."""
    a = as_rows(per_seed)
    k = a.shape[0]
    if k < 2:
        return math.nan
    pairs = [spearman_rows(a[i], a[j])[0] for i in range(k) for j in range(i + 1, k)]
    return nanmean(pairs)


def noise_ceiling(per_seed) -> dict:
    """``{"seeds", "seed_rho", "ceiling"}`` of a task's per-seed labels (see the module docstring)."""
    a = as_rows(per_seed)
    k, r = a.shape[0], seed_agreement(a)
    if math.isnan(r):
        return {"seeds": k, "seed_rho": math.nan, "ceiling": math.nan}
    rel = k * r / (1 + (k - 1) * r) if r > -1 / max(k - 1, 1) else 0.0
    return {"seeds": k, "seed_rho": r, "ceiling": math.sqrt(max(rel, 0.0))}


# --------------------------------------------------------------------------------------------- #
# the search itself: what the top picks under a budget are worth
# --------------------------------------------------------------------------------------------- #

def topk_rows(scores: np.ndarray, truth: np.ndarray, within: np.ndarray, k: int) -> np.ndarray:
    """Best true accuracy among the ``k`` highest-scored students inside the budget, per resample row.

    ``scores``, ``truth`` and ``within`` are ``B x n`` (resampled); ranked by :func:`dass.metrics.rank_desc_rows`.
    """
    s = np.where(within, scores, -np.inf)
    order = rank_desc_rows(s)[:, :k]
    picked = np.take_along_axis(truth, order, -1)
    ok = np.take_along_axis(within, order, -1)
    best = np.where(ok, picked, -np.inf).max(-1)
    return np.where(np.isfinite(best), best, np.nan)   # a resample with nobody inside the budget


def search_bootstrap(truth, scores: Mapping[str, np.ndarray], within, k: int, num: int = NUM_RESAMPLES,
                     seed: int = 0, runs: bool = True) -> dict:
    """Top-``k`` true accuracy under a budget for every method, plus the best student within the budget
    (``oracle``), with samples from the same student resamples; a method's runs are resampled too (two
    levels, as :func:`paired_bootstrap`) and its figure is the mean over the drawn runs."""
    t, w = np.asarray(truth, np.float64), np.asarray(within, bool)
    rng = np.random.default_rng(seed)
    idx = resample_indices(len(t), num, rng)
    ti, wi = t[idx], w[idx]
    oracle = np.where(wi, ti, -np.inf).max(-1)
    out = {"oracle": (float(t[w].max()) if w.any() else math.nan, np.where(np.isfinite(oracle), oracle, np.nan))}
    for m, sc in scores.items():
        rs = as_rows(sc)
        point = np.mean([topk_rows(r[None], t[None], w[None], k)[0] for r in rs])
        per_run = np.stack([topk_rows(r[idx], ti, wi, k) for r in rs])
        out[m] = (float(point), _over_runs(per_run, _run_draws(len(rs), num, rng, runs)))
    return out
