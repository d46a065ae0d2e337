"""``main.py meta-train``: meta-train the DaSS predictor (docs/method.md#meta-learning) on the database at ``db.out``.

Writes ``<meta.out>/{best.pt,last.pt,metrics.jsonl,config.yaml}``. ``--resume`` continues a killed
(or extended: raise ``meta.episodes``) run from ``last.pt``; ``--fresh`` discards an existing run.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..config import resolve_device
from ..errors import DassError


def add_arguments(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in meta.out from its last.pt")
    g.add_argument("--fresh", action="store_true", help="discard the run in meta.out and start over")


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..db.records import load_split_records
    from ..predictor.trainer import MetaTrainer

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    out = Path(cfg.meta.out)
    if (out / "last.pt").is_file() and not (args.resume or args.fresh):
        raise DassError(f"{out} already holds a meta-training run; pass --resume to continue it or --fresh to "
                        f"start over (or set meta.out elsewhere)")
    device = resolve_device(cfg.run.device)
    train = load_split_records(cfg, "meta_train")
    valid = load_split_records(cfg, "meta_valid")
    test = load_split_records(cfg, "meta_test", required=False)
    trainer = MetaTrainer(cfg, train, valid, test, out, device, progress=not args.no_progress)
    s = trainer.run(resume=args.resume)
    print(f"meta-train: {s['episode']} episodes on {len(train)} tasks ({device}); best mean meta-valid Spearman "
          f"{_fmt(s['best_valid_spearman'])} at episode {s['best_episode']}")
    print(f"checkpoint: {s['checkpoint']}  (metrics: {s['metrics']})")
    return 0
