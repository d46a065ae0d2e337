"""``main.py meta-test``: DaSS and the baselines on the unseen tasks, side by side.

See :mod:`dass.meta_test` for what is written (``<meta.out>/meta_test/results.csv``, ``predictions.csv``
and one SVG scatter plot per task and method); this command also prints the table.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..meta_test import format_table, run_meta_test


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", default=None, help="DaSS predictor checkpoint (default: <meta.out>/best.pt)")
    p.add_argument("--baselines", default="all", help="all | none | comma-separated list (random,macs,params,"
                                                      "diswot,metad2a,dass-no-S,dass-no-T,dass-no-A,dass-no-adapt,"
                                                      "dass-first-order)")
    p.add_argument("--out", default=None, help="output folder (default: <meta.out>/meta_test)")


def run(cfg, args) -> int:
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    t0 = time.time()
    out = Path(args.out) if args.out else Path(cfg.meta.out) / "meta_test"
    rows = run_meta_test(cfg, args.checkpoint, args.baselines, progress=not args.no_progress, out=out)
    ckpt = args.checkpoint or str(Path(cfg.meta.out) / "best.pt")
    print(f"meta-test: Spearman per task, then means over tasks (DaSS checkpoint {ckpt})")
    print(format_table(rows))
    print(f"results: {out / 'results.csv'}  ({time.time() - t0:.1f} s)")
    return 0
