"""Ranking metrics between predicted and true accuracy (docs/method.md#evaluation): the one Spearman, the
one ranking, the one "mean ± std" of the project.

Spearman and Pearson as in the paper, plus Kendall. :func:`spearman_rows` is the only Spearman: ties get
average ranks (``scipy.stats.rankdata``), and a constant side gives NaN (a constant baseline is a
legitimate result to report, not an error). :func:`spearman` is its one-pair form.

:func:`rank_desc` / :func:`rank_desc_rows` are the only rankings: highest score first, ties broken by
position (lower index first), NaN scores last. The search's picks, the top-k figures and the plots'
highlighted student all use them. ``topk_true_acc(scores, acc, k)`` is the search-side view of a ranking:
the best *true* accuracy among the ``k`` highest-scored students, what distilling the top-k predicted
students and keeping the best one gives.
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


def spearman_rows(x, y) -> np.ndarray:
    """Spearman of each row pair of ``x`` and ``y`` (``B x n`` or 1-D; ties get average ranks); NaN where a
    row is constant."""
    rx = stats.rankdata(np.atleast_2d(np.asarray(x, dtype=np.float64)), axis=-1)
    ry = stats.rankdata(np.atleast_2d(np.asarray(y, dtype=np.float64)), axis=-1)
    rx -= rx.mean(-1, keepdims=True)
    ry -= ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def spearman(x, y) -> float:
    a, b = _np(x), _np(y)
    if a.shape != b.shape:
        raise ValueError(f"correlation needs two sequences of equal length, got {a.size} and {b.size}")
    if a.size < 2:
        return math.nan
    return float(spearman_rows(a, b)[0])


def pearson(x, y) -> float:
    return _corr(stats.pearsonr, x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b (scipy's default), which accounts for ties."""
    return _corr(stats.kendalltau, x, y)


def rank_desc_rows(scores) -> np.ndarray:
    """Per row of ``B x n`` scores, the indices by decreasing score: ties by lower index, NaN last."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    nan = np.isnan(s)
    # lexsort is stable and sorts by its last key first: finite before NaN, then by decreasing score
    return np.lexsort((np.where(nan, 0.0, -s), nan), axis=-1)


def rank_desc(scores) -> np.ndarray:
    """Indices ordered by decreasing score; ties by lower index, NaN last (:func:`rank_desc_rows`)."""
    return rank_desc_rows(_np(scores))[0]


def topk_true_acc(scores, acc, k: int) -> float:
    """Best true accuracy among the ``k`` highest-scored entries."""
    a = _np(acc)
    order = rank_desc(scores)[: max(1, int(k))]
    return float(np.max(a[order]))


def nanmean(values) -> float:
    """The mean of ``values`` skipping None and NaN; NaN when nothing is left (:func:`nanmean_axis`)."""
    return float(nanmean_axis([math.nan if x is None else float(x) for x in values]))


def nanmean_axis(a, axis: int = 0) -> np.ndarray:
    """``np.nanmean`` along ``axis``: NaN, without numpy's warning, where every entry is NaN (the Spearman of a
    resample whose students all share one label is undefined; it is skipped, never counted as 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(a, np.float64), axis=axis)


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
