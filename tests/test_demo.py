"""The demo is the integration test of every layer: a tiny end-to-end run, its resume, and the notebook."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert set(pooled) == {"dass", "macs", "metad2a"}
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
