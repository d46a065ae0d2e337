"""``main.py meta-test``: DaSS and the baselines on the unseen tasks, side by side.

See :mod:`dass.evaluate` for what is written (``<meta.out>/meta_test/results.csv``, ``stats.csv``,
``search.csv``, ``predictions.csv`` and one scatter plot per task and method); this command also prints
the tables with their intervals and verdicts.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..errors import DassError
from ..predictor.methods import help_text
from . import parse_seeds


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", default=None, help="DaSS predictor checkpoint (default: <meta.out>/best.pt)")
    p.add_argument("--baselines", default="all", help="all | none | comma-separated list of methods. "
                                                      + help_text())
    p.add_argument("--meta-seeds", default=None, metavar="0,1,2",
                   help="meta-train DaSS and every trained baseline once per meta-training seed, e.g. 0,1,2,3,4 "
                        "(the figures then cover the seed-to-seed spread; --checkpoint is not used)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for the intervals")
    p.add_argument("--workers", type=int, default=1,
                   help="meta-train the per-seed/baseline predictors in N processes of one thread each")
    p.add_argument("--out", default=None, help="output folder (default: <meta.out>/meta_test)")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..config import save_config
    from ..evaluate import format_results, format_statistics, run_meta_test

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    t0 = time.time()
    out = Path(args.out) if args.out else Path(cfg.meta.out) / "meta_test"
    seeds = parse_seeds(args.meta_seeds, optional=True, flag="--meta-seeds")
    if args.resamples < 100 or args.workers < 1:
        raise DassError("--resamples must be at least 100 and --workers at least 1")
    save_config(cfg, out, {"command": "meta-test"})   # the config that ran, its git revision and command line
    rep = run_meta_test(cfg, args.checkpoint, args.baselines, progress=not args.no_progress, out=out, seeds=seeds,
                        resamples=args.resamples, workers=args.workers)
    ckpt = f"meta-training seeds {seeds}" if seeds else f"DaSS checkpoint {args.checkpoint or Path(cfg.meta.out) / 'best.pt'}"
    print(f"meta-test: Spearman per task, then means over tasks ({ckpt})")
    print(format_results(rep.rows))
    print()
    print(format_statistics(rep.stats))
    print(f"results: {out / 'results.csv'}  ({time.time() - t0:.1f} s)")
    return 0
