"""Every benchmark script still runs (smallest settings) and writes its figures as JSON.

Not a timed test: figures are only checked for being positive numbers; speed targets live in
bench/RESULTS.md. This keeps the scripts from rotting as the package changes.
"""
import json
import math
import subprocess
import sys

import pytest
from clitools import ENV, ROOT

CASES = [
    ("bench_kd.py", ["--quick", "--threads", "1"],
     ["reference images/s", "engine images/s", "engine, shared teacher logits images/s",
      "speed-up engine, shared teacher logits / reference"]),
    ("bench_search.py", ["--quick", "--threads", "1", "--no-processes", "--candidates", "12", "--episodes", "1"],
     ["embedding work per candidate after prefix sharing", "embed fastembed: maps/s",
      "upper bound at that peak (embedding only)"]),
    ("bench_data.py", ["--quick", "--threads", "1"], []),
    ("bench_db_scaling.py", ["--quick", "--students", "2"],
     ["6 students: speed-up of the teacher-logit cache (1 process x 1 thread)"]),
    ("bench_kd_ddp.py", ["--quick", "--repeats", "1"],
     ["speed-up 2 DDP processes / 1 process", "speed-up engine 2 DDP processes / reference"]),
]


@pytest.mark.parametrize("script,args,names", CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs_and_reports(script, args, names, tmp_path):
    out = tmp_path / "figures.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--device", "cpu", "--json", str(out)],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads(out.read_text())
    figures = {row["figure"]: row["value"] for row in doc["figures"]}
    assert figures and doc["machine"]["cores"] >= 1
    for name in names:
        assert name in figures, (name, sorted(figures))
    for name, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (name, value)
