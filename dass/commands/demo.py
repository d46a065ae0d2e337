"""``main.py demo``: the whole pipeline on the embedded default (docs/method.md#benchmark)."""
from __future__ import annotations

import shutil
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--fresh", action="store_true", help="delete the demo's output folder first")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..demo import run_demo

    if args.fresh and Path(cfg.demo.out).exists():
        shutil.rmtree(cfg.demo.out)
    run_demo(cfg, workers=cfg.demo.workers)
    return 0
