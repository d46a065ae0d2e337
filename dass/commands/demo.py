"""``main.py demo``: the whole pipeline on the embedded default (docs/method.md#benchmark).

Without ``--config`` it runs ``configs/demo.yaml`` (see :data:`dass.cli.DEFAULT_CONFIGS`)."""
from __future__ import annotations

import shutil
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--fresh", action="store_true", help="delete the demo's output folder first")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import require_task_files
    from ..demo import run_demo

    # the demo generates its own tasks; any other dataset must already be there (fail before the work)
    require_task_files(cfg, [*cfg.tasks.meta_train, *cfg.tasks.meta_valid, *cfg.tasks.meta_test],
                       skip_generated=True)
    if args.fresh and Path(cfg.demo.out).exists():
        shutil.rmtree(cfg.demo.out)
    run_demo(cfg, workers=cfg.demo.workers)
    return 0
