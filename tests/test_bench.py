"""Every benchmark script still runs (smallest settings) and writes its figures as JSON.

Not a timed test: figures are only checked for being positive numbers; speed targets live in
bench/RESULTS.md. This keeps the scripts from rotting as the package changes.
"""
import json
import math
import shutil
import subprocess
import sys

import pytest
from clitools import ENV, ROOT

pytestmark = pytest.mark.slow   # end to end / child processes: `bash script/test.sh -m "not slow"` skips it

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


def test_select_predictor_scores_candidates_on_meta_valid_for_dass_and_a_baseline(tmp_path):
    """bench/select_predictor.py at its smallest: two candidates, one seed, DaSS and the MetaD2A-style
    predictor (each candidate's variant trained into its own folder; unseen tasks never loaded)."""
    import yaml

    from dass.config import load_config, to_dict
    from dass.testing import fixture_db_for_config

    cfg = load_config(ROOT / "configs" / "demo.yaml", [
        "tasks.meta_train=[t0,t1,t2]", "tasks.meta_valid=[v0]", "tasks.meta_test=[gone]", "db.num_students=12",
        f"db.out={tmp_path / 'db'}", f"meta.out={tmp_path / 'meta'}", "predictor.func_hidden=8", "predictor.func_dim=8",
        "predictor.arch_dim=4", "predictor.head_hidden=4", "predictor.dataset_feature_dim=8", "predictor.dataset_dim=4",
        "predictor.dataset_heads=2", "meta.episodes=4", "meta.eval_every=2", "meta.n_query=4", "run.device=cpu"])
    fixture_db_for_config(cfg)
    shutil.rmtree(tmp_path / "db" / "meta_test")          # selection must never need an unseen task
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(to_dict(cfg)))
    for method in ("dass", "metad2a"):
        r = subprocess.run([sys.executable, str(ROOT / "bench" / "select_predictor.py"), "--config", str(conf),
                            "--meta-seeds", "0", "--only", "base,target-normalised", "--method", method,
                            "--out", str(tmp_path / "select")], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        assert [row[0] for row in rows] == ["base", "target-normalised"]
        assert all(-1 <= float(row[-1]) <= 1 for row in rows)
    assert sorted(p.name for p in (tmp_path / "select").iterdir()) == [
        "base", "metad2a-base", "metad2a-target-normalised", "target-normalised"]
