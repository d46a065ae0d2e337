"""The authors' meta-training summary ``<folder>_spearmanr_corr.csv``, written by meta-test beside ours.

Layout (docs/method.md#file-formats): a header ``'', va_<dataset>_spearmanr..., va_spearmanr,
te_<dataset>_spearmanr..., te_spearmanr`` -- meta-valid datasets, their mean, meta-test datasets, their
mean -- then one row per predictor, its name first and every value rounded to 3 decimals. Dataset names
follow the authors' keys (``tiny_imagenet-8`` -> ``tiny_imagenet_8``). The authors append one row per run;
this file holds the rows of the latest meta-test, one per evaluated method.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from .io import write_csv
from .metrics import nanmean


def _round(v: float) -> float:
    return round(float(v), 3) if v is not None and not math.isnan(float(v)) else float("nan")


def summary_rows(valid: list[dict], test: list[dict]) -> list[dict]:
    """Rows ``{'': method, 'va_..._spearmanr': rho, ...}`` from per-(task, method) result rows."""
    out = []
    for method in dict.fromkeys(r["method"] for r in test):
        row = {"": method}
        for head, rows in (("va", valid), ("te", test)):
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            for r in mine:
                row[f"{head}_{r['task'].replace('-', '_')}_spearmanr"] = _round(r["spearman"])
            row[f"{head}_spearmanr"] = _round(nanmean([r["spearman"] for r in mine]))
        out.append(row)
    return out


def spearman_csv_path(out_dir: str | os.PathLike, meta_out: str | os.PathLike) -> Path:
    """``<out_dir>/<name of meta.out>_spearmanr_corr.csv`` (the authors' ``<folder_name>_spearmanr_corr.csv``)."""
    return Path(out_dir) / f"{Path(meta_out).name}_spearmanr_corr.csv"


def write_spearman_csv(path: str | os.PathLike, valid: list[dict], test: list[dict]) -> Path:
    return write_csv(path, summary_rows(valid, test))
