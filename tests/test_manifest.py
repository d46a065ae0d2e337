"""The committed benchmark database: its manifest, and a check that it loads and matches its config."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from dass import manifest
from dass.config import load_config
from dass.db.records import MODES, load_records
from dass.errors import DassError
from dass.io import sha256_file

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "configs" / "bench.yaml"


def _fake_db(tmp_path):
    """A config file + a tiny database folder in the committed layout."""
    doc = yaml.safe_load(BENCH.read_text())
    doc["db"]["out"] = str(tmp_path / "db" / "preprocessed")
    cfg_path = tmp_path / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(doc))
    pre = tmp_path / "db" / "preprocessed"
    (pre / "meta_test").mkdir(parents=True)
    (pre / "meta_test" / "a-logs_noise_actmap.pt").write_bytes(b"records" * 10)
    (pre / "report.csv").write_text("task\na\n")
    (pre / "_work").mkdir()
    (pre / "_work" / "x.pt").write_bytes(b"not committed")
    (tmp_path / "db" / "checkpoint" / "teacher" / "a").mkdir(parents=True)
    (tmp_path / "db" / "checkpoint" / "teacher" / "a" / "model_best.pth.tar").write_bytes(b"weights")
    return cfg_path, tmp_path / "db"


def test_manifest_round_trip_and_one_changed_byte(tmp_path):
    cfg_path, root = _fake_db(tmp_path)
    path = manifest.write_manifest(cfg_path, "main.py build-db --config X")
    doc = json.loads(path.read_text())
    assert sorted(doc["files"]) == ["checkpoint/teacher/a/model_best.pth.tar", "preprocessed/meta_test/a-logs_noise_actmap.pt",
                                    "preprocessed/report.csv"]                      # _work is never listed
    assert manifest.verify_manifest(cfg_path)["command"] == "main.py build-db --config X"
    f = root / "preprocessed" / "meta_test" / "a-logs_noise_actmap.pt"
    data = bytearray(f.read_bytes())
    data[3] ^= 1                                                   # one changed byte, same size
    f.write_bytes(bytes(data))
    with pytest.raises(DassError, match="a-logs_noise_actmap.pt: does not match its sha256"):
        manifest.verify_manifest(cfg_path)
    f.unlink()
    with pytest.raises(DassError, match="missing"):
        manifest.verify_manifest(cfg_path)


def test_manifest_refuses_a_changed_config_but_not_other_sections(tmp_path):
    cfg_path, _ = _fake_db(tmp_path)
    manifest.write_manifest(cfg_path, "cmd")
    doc = yaml.safe_load(cfg_path.read_text())
    doc["meta"]["episodes"] = 7                                    # how the predictor trains: not the database
    cfg_path.write_text(yaml.safe_dump(doc))
    manifest.verify_manifest(cfg_path)
    doc["kd"]["epochs"] = 6
    cfg_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DassError, match="changed the sections"):
        manifest.verify_manifest(cfg_path)
    assert manifest.main(["verify", "--config", str(cfg_path)]) == 2
    (tmp_path / "db" / manifest.NAME).write_text("{broken")
    with pytest.raises(DassError, match="cannot read the manifest"):
        manifest.verify_manifest(cfg_path)


def test_write_manifest_needs_a_database(tmp_path):
    cfg_path, root = _fake_db(tmp_path)
    shutil.rmtree(root / "preprocessed" / "meta_test")
    with pytest.raises(DassError, match="build the database first"):
        manifest.write_manifest(cfg_path, "cmd")


@pytest.mark.skipif(not (ROOT / "bench" / "db" / manifest.NAME).is_file(), reason="benchmark database not committed")
def test_committed_benchmark_database_loads_and_matches_its_manifest():
    doc = manifest.verify_manifest(BENCH)
    cfg = load_config(BENCH)
    assert doc["total_bytes"] <= 40 * 2 ** 20
    from dass.db.build import num_students

    for mode in MODES:
        for task in getattr(cfg.tasks, mode):
            rec = load_records(cfg.db.out, mode, task)
            assert len(rec) == num_students(cfg, mode) and rec.seed_best_acc.shape == (2, len(rec))
            assert f"preprocessed/{mode}/{task}-logs_noise_actmap.pt" in doc["files"]


@pytest.mark.skipif(not (ROOT / "bench" / "db" / manifest.NAME).is_file(), reason="benchmark database not committed")
def test_committed_benchmark_labels_are_reproduced_by_the_current_code(tmp_path):
    """Two students of the unseen digits task (its data needs no download), rebuilt from the committed
    (read-only) teacher with today's code, get the committed maps and per-seed labels: the records and the
    code that reads them agree, and the regenerated data is the data the manifest recorded."""
    import torch

    from dass.data import generate as gen
    from dass.data.tasks import write_task
    from dass.db import build as db

    cfg = load_config(BENCH, [f"data.root={tmp_path / 'data'}", f"db.out={tmp_path / 'db' / 'preprocessed'}",
                              f"run.checkpoint_dir={ROOT / 'bench' / 'db' / 'checkpoint'}", "tasks.meta_train=[]",
                              "tasks.meta_valid=[]", "tasks.meta_test=[digits]", "db.num_students_meta_test=2"])
    write_task(tmp_path / "data" / "digits", gen.make_task_arrays(cfg, "digits"), gen.task_spec(cfg, "digits"))
    doc = manifest.verify_manifest(BENCH)
    assert manifest.task_data_digest(tmp_path / "data" / "digits") == doc["task_data"]["digits"]
    teacher = ROOT / "bench" / "db" / "checkpoint" / "teacher" / "digits" / "model_best.pth.tar"
    before = sha256_file(teacher)
    db.build(cfg, ["meta_test"], progress=False, log=lambda s: None)
    assert sha256_file(teacher) == before                       # the released teacher is read only
    new = load_records(cfg.db.out, "meta_test", "digits")
    ref = load_records(load_config(BENCH).db.out, "meta_test", "digits")
    assert new.archs == ref.archs[:2]
    assert torch.equal(new.seed_best_acc, ref.seed_best_acc[:, :2]) and torch.equal(new.best_acc, ref.best_acc[:2])
    assert torch.allclose(new.fmaps, ref.fmaps[:2], atol=1e-6)


@pytest.mark.skipif(not (ROOT / "bench" / "db" / manifest.NAME).is_file(), reason="benchmark database not committed")
def test_report_of_the_committed_database_changes_nothing(tmp_path, capsys):
    """`build-db --report` only reads: the committed database's files keep their bytes."""
    from dass.cli import main

    src = ROOT / "bench" / "db"
    shutil.copytree(src / "preprocessed", tmp_path / "preprocessed", ignore=shutil.ignore_patterns("_work"))
    before = {p: sha256_file(p) for p in (tmp_path / "preprocessed").rglob("*") if p.is_file()}
    assert main(["build-db", "--config", str(BENCH), "--report", f"db.out={tmp_path / 'preprocessed'}"]) == 0
    out = capsys.readouterr().out
    assert "task family: 10 of 33 tasks" in out and "(does NOT pass" in out and "Kendall tau mean 0.42" in out
    assert "digits           150       94.06        9.41" in out            # chance from the stored dataset features
    assert {p: sha256_file(p) for p in (tmp_path / "preprocessed").rglob("*") if p.is_file()} == before


@pytest.mark.skipif(not (ROOT / "bench" / "db" / "predictors").is_dir(), reason="benchmark predictors not committed")
def test_the_committed_predictors_give_the_readme_headline(tmp_path):
    """The committed meta-training runs (verified against the database before use) score the unseen datasets
    as in the README's headline (bench/RESULTS.md section 6: per-seed pooled Spearman of DaSS seeds 0 and 9,
    MACs), on any CPU: scoring a fixed checkpoint is not where rounding differences grow."""
    from dass.evaluate import run_meta_test

    cfg = load_config(BENCH, [f"meta.out={tmp_path / 'meta'}"])
    rep = run_meta_test(cfg, baselines="macs", progress=False, out=tmp_path / "meta_test", seeds=[0, 9],
                        resamples=100)
    assert rep.stats["dass_seeds"]["pooled_per_run"] == pytest.approx([0.6537, 0.5238], abs=0.002)
    pooled = {r["method"]: r for r in rep.stats["rows"] if r["task"] == "pooled"}
    assert pooled["macs"]["spearman"] == pytest.approx(0.583, abs=0.001)
    assert not (tmp_path / "meta" / "seeds").exists()            # nothing was meta-trained
