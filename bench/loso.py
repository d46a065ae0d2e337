#!/usr/bin/env python
"""Leave one source out: each image source of the benchmark in turn unseen, DaSS meta-trained on the others.

    python bench/loso.py --config configs/bench.yaml --meta-seeds 0,1,2,3,4 --workers 2 --out exp/bench/loso

The benchmark's tasks come from five sources (the generated family, fonts, Fashion-MNIST, icons, digits;
``dass.data.tasks.task_source``). For each source S, its tasks -- from every split of the database -- are
the unseen tasks; the tasks of the other sources are meta-train, except the benchmark's meta-valid tasks of
the other sources, which stay meta-valid (models are selected on them only). Every trained method is
meta-trained once per seed with the benchmark's own settings for it (``meta.method_overrides``), and every
figure comes with the two-level bootstrap of ``main.py meta-test`` (students and meta-training runs).

Writes ``<out>/<source>/meta_test/`` (what meta-test writes) and ``<out>/loso.md`` / ``loso.json``: per held-out
source, the pooled Spearman of DaSS, its seed ensemble, the MetaD2A-style predictor and the best proxy, and the
paired differences with their verdicts. The figures belong in bench/RESULTS.md, not in the demo.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from dass.commands import parse_seeds
from dass.config import load_config
from dass.data.tasks import known_tasks, task_source
from dass.errors import DassError, run_reporting_errors
from dass.evaluate import run_meta_test
from dass.io import atomic_write_text, write_json
from dass.stats import ENSEMBLE

PROXIES = ("macs", "params", "diswot")


def fold_config(cfg, source: str, out: Path):
    """The benchmark's config with ``source``'s tasks unseen (module docstring)."""
    c = copy.deepcopy(cfg)
    every = known_tasks(cfg)
    held = [t for t in every if task_source(t) == source]
    c.tasks.meta_test = held
    c.tasks.meta_valid = [t for t in cfg.tasks.meta_valid if task_source(t) != source]
    c.tasks.meta_train = [t for t in every if t not in held and t not in c.tasks.meta_valid]
    c.meta.out = str(out / source / "meta_train")
    c.meta.predictors = ""   # trained here, for this fold
    return c


def fold_summary(source: str, tasks: list[str], stats: dict) -> dict:
    pooled = {r["method"]: r for r in stats["rows"] if r["task"] == "pooled"}
    proxies = [m for m in PROXIES if m in pooled]
    best = max(proxies, key=lambda m: pooled[m]["spearman"]) if proxies else None
    row = {"source": source, "tasks": tasks, "dass": pooled["dass"], "dass_seeds": stats["dass_seeds"]}
    for key, name in (("ensemble", "dass" + ENSEMBLE), ("metad2a", "metad2a"), ("best_proxy", best)):
        if name in pooled:
            row[key] = {"method": name, **pooled[name]}
    return row


def _ci(r: dict, what: str = "") -> str:
    lo, hi = (r["diff_lo"], r["diff_hi"]) if what else (r["lo"], r["hi"])
    v = r["diff"] if what else r["spearman"]
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]" if what else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def format_loso(rows: list[dict]) -> str:
    lines = ["| held-out source (tasks) | DaSS | DaSS ensemble | MetaD2A-style | best proxy | DaSS − best proxy | "
             "verdict | DaSS − MetaD2A-style | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ens, m2, bp = r.get("ensemble"), r.get("metad2a"), r.get("best_proxy")
        lines.append(
            f"| {r['source']} ({len(r['tasks'])}) | {_ci(r['dass'])} | {_ci(ens) if ens else ''} | "
            f"{_ci(m2) if m2 else ''} | {bp['method'] + ' ' + _ci(bp) if bp else ''} | "
            f"{_ci(bp, 'diff') if bp else ''} | {bp['verdict'] if bp else ''} | {_ci(m2, 'diff') if m2 else ''} | "
            f"{m2['verdict'] if m2 else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/bench.yaml")
    p.add_argument("--meta-seeds", default="0,1,2,3,4", help="meta-training seeds of every trained method")
    p.add_argument("--baselines", default="random,macs,params,diswot,metad2a")
    p.add_argument("--sources", default=None, help="comma-separated sources (default: every source of the config)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--out", default="exp/bench/loso")
    a = p.parse_args(argv)
    return run_reporting_errors(lambda: run_folds(a))


def run_folds(a) -> None:
    cfg = load_config(a.config)
    seeds = parse_seeds(a.meta_seeds, flag="--meta-seeds")
    sources = a.sources.split(",") if a.sources else list(dict.fromkeys(task_source(t) for t in known_tasks(cfg)))
    out, rows = Path(a.out), []
    for source in sources:
        t0 = time.time()
        c = fold_config(cfg, source, out)
        if not c.tasks.meta_test:
            raise DassError(f"--sources: the config has no task of source '{source}'")
        print(f"[loso] {source}: unseen {c.tasks.meta_test}; meta-train {len(c.tasks.meta_train)} tasks, "
              f"meta-valid {c.tasks.meta_valid}", file=sys.stderr, flush=True)
        rep = run_meta_test(c, baselines=a.baselines, progress=False, out=out / source / "meta_test",
                            seeds=seeds, resamples=a.resamples, workers=a.workers)
        rows.append(fold_summary(source, c.tasks.meta_test, rep.stats))
        print(f"[loso] {source}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    write_json(out / "loso.json", rows)
    text = format_loso(rows)
    atomic_write_text(out / "loso.md", text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
