"""Released teachers (the authors' ``model_best.pth.tar``: ``state_dict`` + ``best_acc``, no run files) are
used as they are by every command and never retrained or overwritten; a bad one is a one-line error."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from clitools import run_cli, tiny_config, write_config, write_toy_tasks

from dass.config import from_dict
from dass.errors import CheckpointError
from dass.nets import ResNet
from dass.space import SearchSpace
from dass.train import runs, teachers

CLASSES = {"toy-0": 3, "toy-1": 4, "toy-2": 3}
ARCH = json.dumps({"depth_config": [1, 1, 1, 1], "channel_widths": [[2], [4], [4], [8]]})


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def release_teacher(cfg: dict, task: str, acc: float = 61.5) -> Path:
    """A teacher as the authors ship it: DataParallel prefixes, ``best_acc`` a 1-element tensor, no run files."""
    space = SearchSpace.from_config(from_dict(cfg))
    torch.manual_seed(len(task))
    net = ResNet(space.teacher(), CLASSES[task], space.stage_strides)
    p = runs.teacher_dir(from_dict(cfg), task) / "model_best.pth.tar"
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "best_acc": torch.tensor([acc]), "epoch": 179}, p)
    return p


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_toy_tasks(tmp_path_factory.mktemp("data"), 32, 16)


def _ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_status_of_a_teacher_directory(tmp_path):
    d = tmp_path / "t"
    assert runs.dir_status(d) == "missing"
    d.mkdir()
    (d / "model_best.pth.tar").write_bytes(b"x")
    assert runs.dir_status(d) == "released"
    (d / "checkpoint.pth.tar").write_bytes(b"x")
    assert runs.dir_status(d) == "incomplete"
    (d / "result.json").write_text("{}")
    assert runs.dir_status(d) == "trained"
    (d / "model_best.pth.tar").unlink()
    assert runs.dir_status(d) == "incomplete"


def test_released_teachers_are_read_only_in_build_db_search_and_kd(tmp_path, data_root):
    cfg = tiny_config(tmp_path, data_root)
    files = {t: release_teacher(cfg, t, 50.0 + i) for i, t in enumerate(CLASSES)}
    before = {t: sha(p) for t, p in files.items()}
    conf = write_config(tmp_path / "conf.yaml", cfg)

    _ok(run_cli("build-db", "--config", str(conf), "--no-progress", cwd=tmp_path))
    _ok(run_cli("search", "--config", str(conf), "--method", "macs", "search.out=" + str(tmp_path / "s"),
                 "db.out=" + str(tmp_path / "db2"), "--no-progress", cwd=tmp_path))
    r = _ok(run_cli("kd", "--config", str(conf), "--task", "toy-2", "--arch", ARCH, "--seeds", "1", cwd=tmp_path))
    t = _ok(run_cli("train-teacher", "--config", str(conf), "--task", "all", cwd=tmp_path))

    assert {t: sha(p) for t, p in files.items()} == before
    assert sorted(p.name for p in files["toy-0"].parent.iterdir()) == ["model_best.pth.tar"]   # no run files added
    assert "teacher of toy-2: 52.00%" in r.stdout
    assert t.stdout.count("skipped (released)") == 3
    # the database's teacher support record carries the released teacher's accuracy
    rec = torch.load(tmp_path / "db" / "_work" / "meta_train" / "toy-0" / "teacher.pt", weights_only=True)
    assert json.dumps(rec, default=str).count("50.0") >= 1


def test_training_into_a_released_teacher_is_refused(tmp_path, data_root):
    from dass.data.tasks import load_task
    from dass.train.engine import train_teacher

    cfg_d = tiny_config(tmp_path, data_root)
    p = release_teacher(cfg_d, "toy-0")
    cfg = from_dict(cfg_d)
    with pytest.raises(CheckpointError, match="released teacher.*never retrained") as e:
        train_teacher(load_task("toy-0", cfg), cfg)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("command", ["build-db", "kd"])
def test_a_bad_released_teacher_is_an_error_never_replaced(tmp_path, data_root, command):
    cfg = tiny_config(tmp_path, data_root)
    p = release_teacher(cfg, "toy-0")
    p.write_bytes(p.read_bytes()[:200])                                                   # truncated download
    conf = write_config(tmp_path / "conf.yaml", cfg)
    before = sha(p)
    extra = ["--split", "meta_train"] if command == "build-db" else ["--task", "toy-0", "--arch", ARCH]
    r = run_cli(command, "--config", str(conf), *extra, "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(p) in r.stderr, r.stderr
    assert sha(p) == before


def test_a_mismatched_released_teacher_names_the_file(tmp_path, data_root):
    cfg_d = tiny_config(tmp_path, data_root)
    p = release_teacher(cfg_d, "toy-1")                       # 4 classes ...
    cfg = from_dict(cfg_d)
    with pytest.raises(CheckpointError, match="fc.weight") as e:
        teachers.load_teacher_for(cfg, "toy-1", 3)             # ... but the task has 3
    assert str(p) in str(e.value) and "\n" not in str(e.value)
