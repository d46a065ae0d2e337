"""Kill -9 at random points, resume, and get exactly the uninterrupted result.

Each test runs the real command line (``python main.py ...``) three or more times on a tiny seeded
CPU configuration (one thread, so results are bit-identical across processes):

1. an uninterrupted reference run;
2. the same command in another output folder, SIGKILLed at a point drawn from a seeded RNG: when the
   k-th progress record (a metrics line, a finished database item) appears, after a random extra
   delay -- so the kill lands anywhere, including in the middle of writing a checkpoint;
3. the same command again (``--resume`` for meta-training), which must finish the job.

Checks: after every kill, every file under a final name is complete (loads/parses; only the
append-only metrics log may end in a torn line, which the reader drops and the resume truncates);
after the resume, the outputs equal the reference bit for bit (timing fields aside). Temporary files
of an interrupted atomic write carry hidden ``.<name>.<random>.tmp`` names, never a final name.
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
from clitools import (Background, check_complete_files, kill_when, main_cmd, run_main, tiny_config, write_config,
                      write_task)

pytestmark = pytest.mark.slow   # end to end / child processes: `bash script/test.sh -m "not slow"` skips it

# The kill points come from seeded RNGs; DASS_RELIABILITY_SEED=<n> draws another set (soak testing).
SEED = int(os.environ.get("DASS_RELIABILITY_SEED", "0"))
ARCH = {"depth_config": [2, 1, 2, 1], "channel_widths": [[4, 2], [8], [4, 8], [16]]}
SLUG = "4-2_8_4-8_16"


def _count_lines(path: Path, needle: str = "") -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for ln in text.split("\n")[:-1] if needle in ln)   # complete lines only


def _equal_state(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys(), where
    for k in a:
        _equal(a[k], b[k], f"{where}: {k}")


def _equal(x, y, where: str) -> None:
    """Bit-for-bit equality of nested dicts/lists of tensors and plain values (NaN equals NaN)."""
    if isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype, where
        same = torch.equal(x, y) or (x.is_floating_point() and torch.equal(x.isnan(), y.isnan())
                                     and torch.equal(x.nan_to_num(), y.nan_to_num()))
        assert same, where
    elif isinstance(x, dict):
        _equal_state(x, y, where)
    elif isinstance(x, (list, tuple)):
        assert isinstance(y, (list, tuple)) and len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _equal(u, v, f"{where}[{i}]")
    elif isinstance(x, float) and math.isnan(x):
        assert isinstance(y, float) and math.isnan(y), where
    else:
        assert x == y, where


def _load(p: Path):
    return torch.load(p, map_location="cpu", weights_only=True)


def _metrics(path: Path, drop=("epoch_time", "seconds")) -> list[dict]:
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [{k: v for k, v in r.items() if k not in drop} for r in recs if r.get("event") not in ("resume", "start")]


# --------------------------------------------------------------------------------------------- #
# knowledge distillation
# --------------------------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def kd_setup(tmp_path_factory):
    """Toy data and a trained teacher shared by the KD runs."""
    base = tmp_path_factory.mktemp("kd")
    data = base / "data"
    write_task(data, "toy-0", 3, 960, 48, 0)
    cfg = tiny_config(base, data, kd={"epochs": 8, "batch_size": 16, "eval_every": 2},
                      tasks={"meta_train": ["toy-0"], "meta_valid": [], "meta_test": []})
    from dass.config import load_config
    from dass.data.tasks import load_task
    from dass.train.engine import train_teacher

    c = load_config(write_config(base / "teacher.yaml", cfg))
    train_teacher(load_task("toy-0", c), c, device="cpu", progress=False)   # in-process: not under test here
    return base, cfg


def _kd_conf(base: Path, cfg: dict, out: Path) -> Path:
    c = json.loads(json.dumps(cfg))
    c["run"]["out_dir"] = str(out)
    return write_config(out.parent / f"{out.name}.yaml", c)


def test_kd_sigkill_twice_then_resume_is_bit_identical(kd_setup):
    base, cfg = kd_setup
    rng = random.Random(8001 + 1000 * SEED)
    ref, run = base / "ref", base / "killed"
    argv = ("kd", "--task", "toy-0", "--arch", json.dumps(ARCH), "--seeds", "1")
    reference = Background(*argv, "--config", str(_kd_conf(base, cfg, ref)), cwd=base)
    rdir = ref / "kd" / "toy-0" / SLUG / "seed1"
    kdir = run / "kd" / "toy-0" / SLUG / "seed1"
    conf = _kd_conf(base, cfg, run)
    epochs = cfg["kd"]["epochs"]
    # two kills at random epochs (the second in the resumed run), each after a random extra delay
    for k in sorted(rng.sample(range(1, epochs - 3), 2)):
        delay = rng.uniform(0.0, 0.15)
        rc, killed = kill_when(main_cmd(*argv, "--config", str(conf)), base,
                               lambda: _count_lines(kdir / "metrics.jsonl", '"event": "epoch"') >= k, delay)
        assert killed and rc == -9, (rc, killed)
        assert not (kdir / "result.json").exists()
        temps = check_complete_files(run, allow_torn_jsonl=True)
        n = _count_lines(kdir / "metrics.jsonl", '"event": "epoch"')
        print(f"kd: killed after epoch record {k} (+{delay:.3f}s); log has {n} epoch lines; "
              f"temp files: {[t.name for t in temps]}")
    r = run_main(*argv, "--config", str(conf), cwd=base)
    assert r.returncode == 0, r.stderr
    check_complete_files(run)   # a kill mid-write may leave a hidden .tmp; never a torn final file
    reference.wait()

    a, b = json.loads((rdir / "result.json").read_text()), json.loads((kdir / "result.json").read_text())
    for key in ("final_acc", "best_acc", "final_loss", "train_loss", "best_epoch", "epochs"):
        assert a[key] == b[key], key
    for name in ("model_best.pth.tar", "checkpoint.pth.tar"):
        _equal_state(_load(rdir / name)["state_dict"], _load(kdir / name)["state_dict"], name)
    assert _metrics(rdir / "metrics.jsonl") == _metrics(kdir / "metrics.jsonl")
    rows = lambda p: [ln.rsplit(",", 1)[0] for ln in (p / "result.csv").read_text().splitlines()]  # noqa: E731
    assert rows(ref) == rows(run) and len(rows(run)) == 2   # header + one row: written once despite kills


# --------------------------------------------------------------------------------------------- #
# database build
# --------------------------------------------------------------------------------------------- #

def _db_cfg(base: Path, data: Path, name: str) -> dict:
    return tiny_config(base / name, data, kd={"epochs": 2, "batch_size": 16, "eval_every": 1},
                       db={"out": str(base / name / "db"), "num_students": 4, "num_candidates": 4})


def _items(db_out: Path) -> int:
    return sum(1 for p in (db_out / "_work").rglob("[0-9]*.pt")) if (db_out / "_work").exists() else 0


def test_build_db_sigkill_then_resume_equals_uninterrupted(tmp_path):
    from dass.config import load_config
    from dass.db.build import task_plan
    from dass.db.records import candidate_file, load_records
    from dass.search import search_root

    data = tmp_path / "data"
    for k, nc in enumerate((3, 4, 3)):
        write_task(data, f"toy-{k}", nc, 96, 24, k)
    rng = random.Random(8002 + 1000 * SEED)
    argv = ("build-db", "--no-progress")
    ref_c, run_c = _db_cfg(tmp_path, data, "ref"), _db_cfg(tmp_path, data, "killed")
    reference = Background(*argv, "--config", str(write_config(tmp_path / "ref.yaml", ref_c)), cwd=tmp_path)
    conf = write_config(tmp_path / "killed.yaml", run_c)
    db_out = Path(run_c["db"]["out"])
    k = rng.randrange(0, 10)   # 0: while the first teacher trains; j: after the j-th of 12 students
    teacher_ck = Path(run_c["run"]["checkpoint_dir"]) / "teacher" / "toy-0" / "checkpoint.pth.tar"
    ready = (lambda: teacher_ck.exists()) if k == 0 else (lambda: _items(db_out) >= k)
    rc, killed = kill_when(main_cmd(*argv, "--config", str(conf)), tmp_path, ready, rng.uniform(0.0, 0.1))
    assert killed and rc == -9, (rc, killed)
    temps = check_complete_files(tmp_path / "killed", allow_torn_jsonl=True)
    print(f"build-db: killed at point {k}: {_items(db_out)} students stored; temp files: {[t.name for t in temps]}")
    r = run_main(*argv, "--config", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    check_complete_files(tmp_path / "killed")
    reference.wait()

    cref, crun = load_config(tmp_path / "ref.yaml"), load_config(conf)
    for mode, task in task_plan(cref):
        a, b = load_records(cref.db.out, mode, task), load_records(crun.db.out, mode, task)
        assert a.archs == b.archs and a.net_index == b.net_index, task
        for f in ("arch_enc", "fmaps", "best_acc", "final_acc", "final_loss", "macs", "params"):
            assert torch.equal(getattr(a, f), getattr(b, f)), (task, f)
        assert a.teacher.acc == b.teacher.acc and torch.equal(a.teacher.fmap, b.teacher.fmap), task
    for task in cref.tasks.meta_test:
        _equal_state(_load(candidate_file(search_root(cref), task)), _load(candidate_file(search_root(crun), task)),
                     f"candidates {task}")


# --------------------------------------------------------------------------------------------- #
# meta-training
# --------------------------------------------------------------------------------------------- #

def _meta_cfg(base: Path, name: str) -> dict:
    cfg = tiny_config(base, base / "unused")
    cfg.update({
        "space": {"stage_widths": [8, 16, 24, 32], "max_depth": 3, "width_multipliers": [0.5, 0.75, 1.0],
                  "image_size": 16},
        "tasks": {"meta_train": ["t0", "t1", "t2", "t3"], "meta_valid": ["v0"], "meta_test": ["x0"]},
        "db": {"out": str(base / "db"), "num_students": 16},
        "predictor": {"func_hidden": 16, "func_dim": 16, "arch_dim": 8, "head_hidden": 8,
                      "target_norm": "meta_train", "dataset_feature_dim": 16},
        "meta": {"episodes": 60, "eval_every": 5, "n_query": 8, "outer_lr": 0.005, "out": str(base / name)},
    })
    return cfg


def test_meta_train_sigkill_twice_then_resume_is_bit_identical(tmp_path):
    from dass.config import load_config
    from dass.testing import fixture_db_for_config

    rng = random.Random(8003 + 1000 * SEED)
    ref_conf = write_config(tmp_path / "ref.yaml", _meta_cfg(tmp_path, "ref"))
    fixture_db_for_config(load_config(ref_conf))
    reference = Background("meta-train", "--no-progress", "--config", str(ref_conf), cwd=tmp_path)
    conf = write_config(tmp_path / "killed.yaml", _meta_cfg(tmp_path, "killed"))
    out = tmp_path / "killed"
    first = True
    for k in sorted(rng.sample(range(1, 11), 2)):   # after the k-th evaluation (of 12), + a random delay
        cmd = main_cmd("meta-train", "--no-progress", *([] if first else ["--resume"]), "--config", str(conf))
        rc, killed = kill_when(cmd, tmp_path, lambda: _count_lines(out / "metrics.jsonl") >= k + 1,
                               rng.uniform(0.0, 0.05))
        assert killed and rc == -9, (rc, killed)
        temps = check_complete_files(out, allow_torn_jsonl=True)
        print(f"meta-train: killed after evaluation {k}; log has {_count_lines(out / 'metrics.jsonl')} lines; "
              f"temp files: {[t.name for t in temps]}")
        first = False
    r = run_main("meta-train", "--no-progress", "--resume", "--config", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    check_complete_files(out)
    reference.wait()

    ref = tmp_path / "ref"
    for name in ("best.pt", "last.pt"):
        a, b = _load(ref / name), _load(out / name)
        assert a["episode"] == b["episode"], name
        _equal_state(a["model"], b["model"], name)
        _equal_state(a["inner_lrs"], b["inner_lrs"], name)
    assert _metrics(ref / "metrics.jsonl") == _metrics(out / "metrics.jsonl")
