"""Ranking metrics between predicted and true accuracy (docs/method.md#evaluation).

Spearman and Pearson as in the paper, plus Kendall.

All functions take 1-D sequences (lists, numpy arrays or tensors) and return Python floats. A
correlation is undefined when either side is constant; scipy then warns and returns NaN, and so do we
(silently: a constant baseline is a legitimate result to report, not an error).

``topk_true_acc(scores, acc, k)`` is the search-side view of a ranking: the best *true* accuracy
among the ``k`` highest-scored students, i.e. what you get by distilling the top-k predicted students
and keeping the best one. Ties in the score are broken by position (stable sort), so the result is
deterministic.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import stats


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _corr(fn, x, y) -> float:
    a, b = _np(x), _np(y)
    if a.shape != b.shape:
        raise ValueError(f"correlation needs two sequences of equal length, got {a.size} and {b.size}")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fn(a, b)
    v = float(r[0] if isinstance(r, tuple) else getattr(r, "statistic", r))
    return v


def spearman(x, y) -> float:
    return _corr(stats.spearmanr, x, y)


def pearson(x, y) -> float:
    return _corr(stats.pearsonr, x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b (scipy's default), which accounts for ties."""
    return _corr(stats.kendalltau, x, y)


def rank_desc(scores) -> np.ndarray:
    """Indices ordered by decreasing score; ties keep their original order."""
    s = _np(scores)
    return np.argsort(-s, kind="stable")


def topk_true_acc(scores, acc, k: int) -> float:
    """Best true accuracy among the ``k`` highest-scored entries."""
    a = _np(acc)
    order = rank_desc(scores)[: max(1, int(k))]
    return float(np.max(a[order]))


def nanmean(values) -> float:
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    return sum(v) / len(v) if v else math.nan


STD_NOTE = "mean ± std: std is the sample standard deviation (ddof = 1)"


def mean_std(values) -> tuple[float, float]:
    """Mean and *sample* standard deviation (ddof = 1) of ``values``: the one "mean ± std" of the project.

    Every "mean ± std" the project reports (KD over seeds, the demo's report) uses it, so figures from
    different commands compare (docs/method.md#evaluation). A single value has no measured spread: std 0.
    """
    v = _np(values).astype(np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
