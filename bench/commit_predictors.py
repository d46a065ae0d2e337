#!/usr/bin/env python
"""Commit the benchmark's meta-trained predictors beside its database, so its headline reproduces exactly.

    python bench/commit_predictors.py --config configs/bench.yaml --from exp/bench/meta_train --methods dass,metad2a

``main.py meta-test --meta-seeds ...`` meta-trains every trained method once per seed into
``<meta.out>/seeds/<method>/seed<k>/best.pt``. This copies those checkpoints to the config's
``meta.predictors`` folder as ``<method>/seed<k>.pt`` (bench/db/predictors), each checked first against the
database and the config (its fingerprint, layout and the digest of the data it learned from: a predictor
of another database is refused). Then rewrite the manifest (``python -m dass.manifest write ...``, the
command bench/db/MANIFEST.json records) so the predictors are verified with the rest.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dass.config import load_config
from dass.db.records import load_split_records
from dass.errors import DassError, run_reporting_errors
from dass.io import atomic_write_bytes
from dass.evaluate import check_committed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/bench.yaml")
    p.add_argument("--from", dest="source", default=None, help="the meta.out of the meta-test run (default: the config's)")
    p.add_argument("--methods", default="dass,metad2a")
    a = p.parse_args(argv)
    return run_reporting_errors(lambda: commit(a))


def commit(a) -> None:
    cfg = load_config(a.config)
    if not cfg.meta.predictors:
        raise DassError(f"{a.config} sets no meta.predictors folder to commit the predictors to")
    src = Path(a.source or cfg.meta.out) / "seeds"
    splits = [load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test")]
    for name in a.methods.split(","):
        runs = sorted(src.glob(f"{name}/seed*/best.pt"), key=lambda q: int(q.parent.name[4:]))
        if not runs:
            raise DassError(f"no run of '{name}' under {src}; run main.py meta-test --meta-seeds ... first")
        for ck in runs:
            check_committed(cfg, name, ck, *splits)
            dest = Path(cfg.meta.predictors) / name / f"{ck.parent.name}.pt"
            atomic_write_bytes(dest, ck.read_bytes())    # a killed copy never leaves half a predictor
        print(f"{name}: {len(runs)} predictors -> {Path(cfg.meta.predictors) / name}")


if __name__ == "__main__":
    sys.exit(main())
