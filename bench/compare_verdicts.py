#!/usr/bin/env python
"""A verdict counts only if it holds under another CPU's rounding: two meta-test runs side by side.

    python bench/compare_verdicts.py exp/bench/meta_train/meta_test/stats.json exp/bench/avx2/meta_test/stats.json \\
        --labels "AVX-512 (picked)" "AVX2 (forced)"

Each ``stats.json`` is what ``main.py meta-test`` writes; run the headline twice, once with the kernels the
machine picks and once with another instruction set forced (``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX-512 machine, ``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41`` on an
AVX2 one). Prints one markdown row per (task, method): both runs' Spearman and paired difference DaSS − method
with its interval and verdict, and the joint verdict -- the shared one where they agree, "not resolved" where
they do not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dass.errors import DataError, run_reporting_errors


def _rows(path: Path) -> dict:
    try:
        st = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a meta-test stats.json ({e}); pass the stats.json main.py meta-test wrote")
    return {(r["task"], r["method"]): r for r in st["rows"]}


def joint(a: str, b: str) -> str:
    return a if a == b else "not resolved"


def table(a: dict, b: dict, labels: tuple[str, str], pooled_only: bool) -> str:
    la, lb = labels
    lines = [f"| task | method | Spearman {la} | Spearman {lb} | DaSS − method {la} | DaSS − method {lb} | "
             f"verdict {la} | verdict {lb} | verdict (both) |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted(set(a) & set(b), key=lambda k: (k[0] != "pooled", k[0], k[1] != "dass", k[1]))
    for key in keys:
        if pooled_only and key[0] != "pooled":
            continue
        x, y = a[key], b[key]
        d = lambda r: f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]" if "diff" in r else ""  # noqa
        s = lambda r: f"{r['spearman']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"  # noqa: E731
        v = (x.get("verdict", ""), y.get("verdict", ""))
        lines.append(f"| {key[0]} | {key[1]} | {s(x)} | {s(y)} | {d(x)} | {d(y)} | {v[0]} | {v[1]} | "
                     f"{joint(*v) if 'diff' in x else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--labels", nargs=2, default=("first", "second"))
    p.add_argument("--pooled", action="store_true", help="only the pooled rows")
    a = p.parse_args(argv)
    return run_reporting_errors(lambda: print(table(_rows(a.first), _rows(a.second), tuple(a.labels), a.pooled)))


if __name__ == "__main__":
    sys.exit(main())
