"""The demo is the integration test of every layer: a tiny end-to-end run, its resume, and the notebook."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # end to end / child processes: `bash script/test.sh -m "not slow"` skips it

ROOT = Path(__file__).resolve().parent.parent


def tiny_overrides(out):
    return [f"demo.out={out}", f"data.root={out}/data", f"db.out={out}/preprocessed", f"meta.out={out}/meta_train",
            f"search.out={out}/search", f"run.out_dir={out}/runs", f"run.checkpoint_dir={out}/checkpoint",
            "space.stage_widths=[4,8,8,16]", "space.max_depth=2", "space.width_multipliers=[0.5,1.0]",
            "space.image_size=8", "data.crop_padding=1", "data.synthetic_num_tasks=4",
            "data.synthetic_train_per_class=12", "data.synthetic_test_per_class=6",
            "tasks.meta_train=[synth-0,synth-1]", "tasks.meta_valid=[synth-2]", "tasks.meta_test=[synth-3,digits]",
            "teacher.epochs=2", "teacher.eval_every=1", "teacher.batch_size=16", "kd.batch_size=16", "kd.epochs=1", "kd.eval_every=1", "kd.seeds=[1,2]",
            "db.num_students=5", "db.num_candidates=8", "meta.episodes=6", "meta.eval_every=3", "meta.n_query=4",
            "predictor.dataset_samples_per_class=2", "predictor.dataset_feature_dim=8", "demo.workers=1"]


def write_benchmark_config(out, ov) -> Path:
    """The headline stage's benchmark at tiny size: the demo's own freshly built database."""
    import yaml

    from dass.config import load_config, to_dict

    doc = to_dict(load_config(ROOT / "configs" / "demo.yaml", ov))
    path = out / "bench.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if k != "demo"}))
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    ov = tiny_overrides(out)
    ov += [f"demo.benchmark={write_benchmark_config(out, ov)}", "demo.benchmark_seeds=[0,1]",
           "demo.benchmark_methods=macs,metad2a"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "main.py", "demo", "--config", "configs/demo.yaml", *ov], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, ov, r


def test_demo_report(demo_run):
    out, _, r = demo_run
    rep = json.loads((out / "report.json").read_text())
    methods = {row["method"] for row in rep["spearman"]}
    assert {"dass", "random", "macs", "params", "diswot"} <= methods
    assert {row["task"] for row in rep["spearman"]} == {"synth-3", "digits"}
    for task in ("synth-3", "digits"):
        d = rep["distill"][task]
        for who in ("dass", "random", "largest"):
            assert len(d[who]["accs"]) == 2 and 0 <= d[who]["mean"] <= 100
        assert rep["search"][task]["dass"]["macs"] <= rep["search"][task]["budget_macs"]
    assert "Spearman" in r.stdout and "Wall time per stage" in (out / "report.md").read_text()
    # the headline: DaSS over two meta-training seeds against MACs and MetaD2A, with intervals and verdicts
    b = rep["benchmark"]
    assert b["stats"]["dass_seeds"]["runs"] == 2 and b["manifest"] is None
    pooled = {x["method"]: x for x in b["stats"]["rows"] if x["task"] == "pooled"}
    # two runs per learned method: each seed's row and the rank-averaged ensemble's row
    assert set(pooled) == {"dass", "dass ensemble", "macs", "metad2a", "metad2a ensemble"}
    assert pooled["macs"]["verdict"] in ("better", "worse", "not resolved")
    assert pooled["macs"]["lo"] <= pooled["macs"]["spearman"] <= pooled["macs"]["hi"]
    text = (out / "report.md").read_text()
    assert "Headline" in text and "not verified" in text.lower() and "sample standard deviation" in text
    # the saved config is the one that ran, budget included
    import yaml
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["config"]["search"]["max_macs"] == rep["search"]["synth-3"]["budget_macs"] > 0
    import yaml
    idx = yaml.safe_load((out / "search" / "obtained_net_index.yaml").read_text())
    assert set(idx["net_index"]) == {"synth-3", "digits"}


def test_demo_second_run_reuses_every_stage(demo_run):
    out, ov, _ = demo_run
    r = subprocess.run([sys.executable, "main.py", "demo", "--config", "configs/demo.yaml", *ov], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert all(t["reused"] for name, t in rep["stages"].items() if name != "tasks")


def test_notebook_runs_headless(demo_run):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out, ov, _ = demo_run
    nb = nbformat.read(ROOT / "notebooks" / "inspect_predictions.ipynb", as_version=4)
    os.environ["DASS_CONFIG"] = "configs/demo.yaml"
    os.environ["DASS_OVERRIDES"] = " ".join(ov)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        os.environ.pop("DASS_CONFIG"), os.environ.pop("DASS_OVERRIDES")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "spearman" in text and "searched" in text


def _committed_config(out: Path) -> Path:
    """The demo's benchmark config with its two DaSS and MetaD2A runs committed as predictors
    (bench/commit_predictors.py, as the benchmark's were)."""
    import yaml

    bench = yaml.safe_load((out / "bench.yaml").read_text())
    bench["meta"]["predictors"] = str(out / "committed")
    path = out / "bench-committed.yaml"
    path.write_text(yaml.safe_dump(bench))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "commit_predictors.py"), "--config", str(path),
                        "--from", str(out / "benchmark" / "meta_train"), "--methods", "dass,metad2a"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dass: 2 predictors" in r.stdout and (out / "committed" / "metad2a" / "seed1.pt").is_file()
    return path


def test_the_headline_from_committed_predictors_and_the_live_check(demo_run, tmp_path, one_thread):
    """Committed predictors reproduce the meta-trained figures exactly, a live re-training of a seed on the same
    machine gives its committed run back, and a predictor of another database is refused."""
    import copy

    import torch

    from dass.config import load_config
    from dass.demo import _benchmark
    from dass.errors import CheckpointError
    from dass.evaluate import run_meta_test

    out, ov, _ = demo_run
    cfg = load_config(ROOT / "configs" / "demo.yaml", [*ov, f"demo.benchmark={_committed_config(out)}",
                                                       "demo.benchmark_methods=macs,metad2a",
                                                       "demo.benchmark_live_seeds=[0]",
                                                       "demo.benchmark_live_methods=metad2a", f"demo.out={tmp_path}"])
    got = _benchmark(cfg, tmp_path, lambda s: None)
    trained = json.loads((out / "report.json").read_text())["benchmark"]["stats"]
    assert got["committed"] and got["stats"]["dass_seeds"] == trained["dass_seeds"]
    pooled = lambda st: {r["method"]: r["spearman"] for r in st["rows"] if r["task"] == "pooled"}  # noqa: E731
    assert pooled(got["stats"]) == pooled(trained)
    assert got["live"]["here"] == got["live"]["committed"]            # this machine: the same bits
    assert set(got["live"]["here"]) == {"dass", "metad2a"}            # DaSS always, and the methods asked for
    # a committed predictor that learned from other records is refused, naming the file
    bcfg = load_config(_committed_config(out))
    bad = Path(bcfg.meta.predictors) / "dass" / "seed1.pt"
    ck = torch.load(bad, weights_only=True)
    ck["data"] = "0" * 64
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match=f"committed predictor {bad} was not meta-trained on this database"):
        run_meta_test(copy.deepcopy(bcfg), baselines="none", progress=False, out=tmp_path / "mt")


def test_leave_one_source_out_at_a_tiny_size(demo_run, tmp_path):
    """bench/loso.py on the demo's database: two sources (the generated family and digits), each unseen in turn."""
    out, _, _ = demo_run
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "loso.py"), "--config", str(out / "bench.yaml"),
                        "--meta-seeds", "0,1", "--baselines", "macs,metad2a", "--resamples", "200",
                        "--out", str(tmp_path / "loso")], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "loso" / "loso.json").read_text())
    assert [x["source"] for x in rows] == ["synth", "digits"]
    assert rows[0]["tasks"] == ["synth-0", "synth-1", "synth-2", "synth-3"] and rows[1]["tasks"] == ["digits"]
    assert rows[0]["best_proxy"]["method"] == "macs" and rows[0]["ensemble"]["method"] == "dass ensemble"
    assert "| synth (4) |" in r.stdout and "| digits (1) |" in r.stdout
    cfg = yaml_load(tmp_path / "loso" / "digits" / "meta_train" / "seeds" / "dass" / "seed0" / "config.yaml")
    assert cfg["config"]["tasks"]["meta_test"] == ["digits"] and "digits" not in cfg["config"]["tasks"]["meta_train"]


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_verdicts_compared_across_two_runs(tmp_path):
    """bench/compare_verdicts.py: a verdict two runs share stands, one they disagree on is "not resolved"."""
    def stats(verdict_macs, verdict_params):
        rows = [{"task": "pooled", "method": "dass", "spearman": 0.6, "lo": 0.5, "hi": 0.7}]
        for m, v in (("macs", verdict_macs), ("params", verdict_params)):
            rows.append({"task": "pooled", "method": m, "spearman": 0.4, "lo": 0.3, "hi": 0.5, "diff": 0.2,
                         "diff_lo": 0.1 if v == "better" else -0.1, "diff_hi": 0.3, "verdict": v})
        return {"rows": rows}

    (tmp_path / "a.json").write_text(json.dumps(stats("better", "better")))
    (tmp_path / "b.json").write_text(json.dumps(stats("better", "not resolved")))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "compare_verdicts.py"), str(tmp_path / "a.json"),
                        str(tmp_path / "b.json"), "--labels", "A", "B"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {ln.split("|")[2].strip(): ln.split("|")[-2].strip() for ln in r.stdout.splitlines()[2:]}
    assert rows == {"dass": "", "macs": "better", "params": "not resolved"}
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "compare_verdicts.py"), str(tmp_path / "nope.json"),
                          str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "nope.json" in bad.stderr
