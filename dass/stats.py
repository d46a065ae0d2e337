"""Uncertainty of ranking figures: bootstrap intervals, paired comparisons, noise ceilings.

docs/method.md#evaluation. Every ranking figure the project reports comes with a 95% interval, and a
difference between two methods is called "better" or "worse" only when its paired interval excludes 0;
otherwise it is "not resolved".

* **Bootstrap over students.** A resample draws a task's students with replacement; every method is
  scored on the *same* resamples (a paired bootstrap), so what two methods share (the task, the students
  drawn) cancels in their difference. Pooled over tasks, each resample draws every task's students
  independently (a stratified bootstrap) and the figure is the mean over tasks. Intervals are
  percentile intervals. :func:`bootstrap_spearman` is cross-checked against ``scipy.stats.bootstrap``
  in the tests.
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
from .metrics import rank_desc_rows, spearman_rows

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


def _method_rho(scores: np.ndarray, truth: np.ndarray, idx: Optional[np.ndarray]) -> np.ndarray:
    """Spearman of a method (mean over its runs): a scalar array, or one value per resample."""
    runs = as_rows(scores)
    if idx is None:
        return np.nanmean(spearman_rows(runs, np.broadcast_to(truth, runs.shape)))
    t = truth[idx]
    return np.nanmean(np.stack([spearman_rows(r[idx], t) for r in runs]), axis=0)


def paired_bootstrap(tasks: Sequence[TaskScores], num: int = NUM_RESAMPLES, seed: int = 0) -> dict:
    """Spearman of every method per task and pooled (mean over tasks), each with its bootstrap samples.

    Returns ``{"point": {(task, method): rho}, "samples": {(task, method): array[num]}}``; the pooled
    entries use task ``"pooled"``. Every method sees the same resamples of a task.
    """
    rng = np.random.default_rng(seed)
    point, samples = {}, {}
    methods = list(tasks[0].scores) if tasks else []
    for ts in tasks:
        truth = np.asarray(ts.truth, np.float64)
        idx = resample_indices(len(truth), num, rng)
        for m in methods:
            point[(ts.task, m)] = float(_method_rho(ts.scores[m], truth, None))
            samples[(ts.task, m)] = _method_rho(ts.scores[m], truth, idx)
    for m in methods:
        point[("pooled", m)] = float(np.nanmean([point[(ts.task, m)] for ts in tasks]))
        samples[("pooled", m)] = np.nanmean(np.stack([samples[(ts.task, m)] for ts in tasks]), axis=0)
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
    return float(np.nanmean(pairs)) if not np.all(np.isnan(pairs)) else math.nan


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
                     seed: int = 0) -> dict:
    """Top-``k`` true accuracy under a budget for every method, plus the best student within the budget
    (``oracle``), with samples from the same resamples. Methods with several runs average them."""
    t, w = np.asarray(truth, np.float64), np.asarray(within, bool)
    idx = resample_indices(len(t), num, np.random.default_rng(seed))
    ti, wi = t[idx], w[idx]
    oracle = np.where(wi, ti, -np.inf).max(-1)
    out = {"oracle": (float(t[w].max()) if w.any() else math.nan, np.where(np.isfinite(oracle), oracle, np.nan))}
    for m, sc in scores.items():
        runs = as_rows(sc)
        point = np.mean([topk_rows(r[None], t[None], w[None], k)[0] for r in runs])
        samp = np.mean([topk_rows(r[idx], ti, wi, k) for r in runs], axis=0)
        out[m] = (float(point), samp)
    return out
