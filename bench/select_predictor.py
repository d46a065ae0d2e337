"""Choose the benchmark's predictor settings on meta-valid only (the unseen tasks are never loaded).

Each candidate is the benchmark config plus a few overrides (the method's own levers: episodes, query
size, target normalisation, inputs). Each is meta-trained once per seed into ``exp/bench/select/<name>``
(reused when done) and scored by its best mean meta-valid Spearman, the figure meta-training selects its
checkpoint by. Prints a table; the winner's overrides go into configs/bench.yaml by hand.

    python bench/select_predictor.py --config configs/bench.yaml --meta-seeds 0,1
    python bench/select_predictor.py --config configs/bench.yaml --meta-seeds 0,1 --method metad2a

``--method`` scores a trained baseline's variant of each candidate (its own runs, ``<out>/<method>-<name>``):
every trained method is compared at the settings chosen for it, written as ``meta.method_overrides``
(docs/method.md#evaluation).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dass.config import from_dict, load_config, resolve_device, to_dict
from dass.db.records import load_split_records
from dass.parallel import map_processes
from dass.predictor.checkpoint import load_predictor
from dass.predictor.methods import variant_config
from dass.predictor.trainer import train_or_reuse

CANDIDATES = {
    "base": [],
    "episodes-1000": ["meta.episodes=1000"],
    "query-50": ["meta.n_query=50"],
    # a variant beyond the paper (its inputs S, T, A): reported beside the faithful predictor, never in its place
    "inputs-STAD": ["predictor.inputs=[S,T,A,D]"],
    "target-normalised": ["predictor.target_norm=meta_train"],
    # the config's predictor is the wider one; this is the project default's width
    "narrower": ["predictor.func_hidden=32", "predictor.func_dim=32", "predictor.arch_dim=16",
                 "predictor.head_hidden=16"],
}


def _train(cfg_dict: dict) -> float:
    """One candidate and seed meta-trained (reused when done) on meta-train, selected on meta-valid: its best
    mean meta-valid Spearman. The unseen tasks are never loaded."""
    cfg = from_dict(cfg_dict)
    device = resolve_device(cfg.run.device)
    best = train_or_reuse(cfg, load_split_records(cfg, "meta_train"), load_split_records(cfg, "meta_valid"), [],
                          device, progress=False)
    return float(load_predictor(best, device).settings.get("valid_spearman", float("nan")))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/bench.yaml")
    p.add_argument("--meta-seeds", default="0,1", help="meta-training seeds")
    p.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    p.add_argument("--out", default="exp/bench/select")
    p.add_argument("--method", default="dass", help="a trained method of the registry (e.g. metad2a): its "
                   "variant of each candidate config is trained and scored")
    p.add_argument("--workers", type=int, default=1, help="meta-train in N processes of one thread each")
    a = p.parse_args()
    seeds = [int(s) for s in a.meta_seeds.split(",")]
    names = [n for n in CANDIDATES if not a.only or n in a.only.split(",")]
    jobs = []
    for name in names:
        for seed in seeds:
            cfg = load_config(a.config, [*CANDIDATES[name], f"meta.seed={seed}", "meta.predictors="])
            if a.method != "dass":
                cfg = variant_config(cfg, a.method)
            cfg.meta.out = str(Path(a.out) / (name if a.method == "dass" else f"{a.method}-{name}") / f"seed{seed}")
            jobs.append(to_dict(cfg))
    vals = map_processes(_train, jobs, a.workers) if a.workers > 1 else [_train(j) for j in jobs]
    print(f"{'candidate':<16} {'meta-valid Spearman per seed':<36} mean")
    for i, name in enumerate(names):
        v = vals[i * len(seeds):(i + 1) * len(seeds)]
        print(f"{name:<16} {' '.join(f'{x:.3f}' for x in v):<36} {np.mean(v):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
