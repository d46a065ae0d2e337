"""The training engine: teacher training, KD, run directories, resume, checkpoint refusal, CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dass.cli import main
from dass.config import load_config
from dass.data.loader import BatchLoader
from dass.data.tasks import TaskData
from dass.errors import CheckpointError
from dass.io import atomic_torch_save, read_jsonl, safe_torch_load
from dass.nets import ResNet
from dass.space import Arch, SearchSpace
from dass.train import engine as train
from dass.train import recipe, runs, teachers

TASK = "synth-0"  # a name the demo config lists (the CLI accepts only configured tasks)
STUDENT = Arch([1, 2, 1, 1], [[6], [12, 16], [18], [32]])


def tiny_task(n_train=128, n_test=64, k=8, size=16, seed=0, name=TASK) -> TaskData:
    """8 classes told apart by a coarse colour layout (robust to the 2-pixel random crop) plus noise."""
    g = np.random.default_rng(seed)
    coarse = g.uniform(0, 255, (k, 4, 4, 3))
    tmpl = np.repeat(np.repeat(coarse, size // 4, axis=1), size // 4, axis=2)

    def split(n):
        y = np.arange(n) % k
        x = np.clip(tmpl[y] + g.normal(0, 30, (n, size, size, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    (a, b), (c, d) = split(n_train), split(n_test)
    return TaskData(name, a, b, c, d, k)


def make_cfg(root: Path, *extra):
    return load_config("configs/demo.yaml", [
        f"run.out_dir={root}/runs", f"run.checkpoint_dir={root}/checkpoint", f"search.out={root}/search",
        "run.device=cpu", "teacher.epochs=4", "teacher.eval_every=2", "teacher.batch_size=32", "teacher.lr=0.02",
        "kd.epochs=3", "kd.eval_every=2", "kd.batch_size=32", "kd.seeds=[1,2]", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One teacher trained through the engine (shared by the tests below)."""
    root = tmp_path_factory.mktemp("engine")
    cfg = make_cfg(root)
    task = tiny_task()
    result = train.train_teacher(task, cfg, progress=False)
    return root, cfg, task, result


def _weights(path):
    return safe_torch_load(path)["state_dict"]


def _epoch_records(run_dir):
    recs = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "epoch"]
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in recs]


# --------------------------------------------------------------------------------------------- #
# batches
# --------------------------------------------------------------------------------------------- #

@pytest.mark.parametrize("pad,train_split", [(2, True), (0, True), (2, False)])
def test_preloaded_batches_equal_streamed_batches(pad, train_split):
    task = tiny_task(n_train=70)
    kw = dict(batch_size=16, image_size=16, train=train_split, seed=3, pad=pad)
    plain = BatchLoader(task.train_images, task.train_labels, preload=False, **kw)
    pre = BatchLoader(task.train_images, task.train_labels, preload=True, **kw)
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        pre.set_epoch(epoch)
        a, b = list(plain), list(pre)
        assert len(a) == len(b) == len(plain) == (4 if train_split else 5)
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb)
            assert torch.equal(xa, xb)
    plain.set_epoch(1)
    pre.set_epoch(2)
    if train_split:  # different epochs really give different batches
        assert not torch.equal(next(iter(plain))[0], next(iter(pre))[0])


# --------------------------------------------------------------------------------------------- #
# teacher
# --------------------------------------------------------------------------------------------- #

def test_teacher_training_learns_and_writes_run_dir(trained):
    root, cfg, task, r = trained
    d = root / "checkpoint" / "teacher" / TASK
    assert r["epochs"] == 4 and r["checkpoint"] == str(d / "model_best.pth.tar")
    recs = _epoch_records(d)
    assert [x["epoch"] for x in recs] == [1, 2, 3, 4]
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]
    assert [x["epoch"] for x in recs if "test_acc" in x] == [2, 4]          # eval every 2 and at the end
    assert r["best_acc"] == max(x["test_acc"] for x in recs if "test_acc" in x)
    assert r["final_acc"] == recs[-1]["test_acc"] and r["final_loss"] == recs[-1]["test_loss"]
    assert r["best_acc"] > 25.0                                              # chance is 12.5 %
    # per-iteration cosine: 4 iterations per epoch, lr 0 at the very end
    assert recs[0]["lr"] == pytest.approx(0.01 * (1 + np.cos(np.pi * 4 / 16)))
    assert recs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)

    doc = yaml.safe_load((d / "config.yaml").read_text())
    assert doc["git_revision"] and doc["config"]["teacher"]["epochs"] == 4
    best = safe_torch_load(d / "model_best.pth.tar")
    assert {"state_dict", "best_acc", "epoch", "arch", "num_classes"} <= set(best)
    assert best["arch"] == SearchSpace.from_config(cfg).teacher().to_dict() and best["num_classes"] == 8
    assert best["best_acc"] == r["best_acc"] and best["epoch"] == r["best_epoch"]
    ck = safe_torch_load(d / "checkpoint.pth.tar")
    assert {"state_dict", "optimizer", "scheduler", "epoch", "rng", "best_acc"} <= set(ck) and ck["epoch"] == 4

    rows = (root / "runs" / "result.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["data", "proxy", "seed", "best acc"]     # the authors' columns first
    assert rows[1].split(",")[:4] == [TASK, "teacher", "0", str(round(r["best_acc"], 3))]

    assert teachers.teacher_status(cfg, TASK) == "trained"
    teacher, acc = teachers.load_teacher_for(cfg, TASK, 8)
    assert acc == r["best_acc"] and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    test = BatchLoader(task.test_images, task.test_labels, 32, 16, train=False, pad=2)
    got_acc, got_loss = train.evaluate(teacher, test)
    assert got_acc == pytest.approx(acc, abs=1e-9)                             # model_best holds the best weights
    assert np.isfinite(got_loss)

    # a finished run is not trained again: same result, no new metrics, no second csv row
    before = (d / "metrics.jsonl").read_text()
    assert train.train_teacher(task, cfg, progress=False) == r
    assert (d / "metrics.jsonl").read_text() == before
    assert len((root / "runs" / "result.csv").read_text().splitlines()) == 2


def test_resume_with_other_recipe_is_refused(trained):
    root, cfg, task, _ = trained
    other = make_cfg(root, "teacher.epochs=6")
    with pytest.raises(CheckpointError, match=r"teacher\.epochs=4 \(now 6\)"):
        train.train_teacher(task, other, progress=False)


# --------------------------------------------------------------------------------------------- #
# KD
# --------------------------------------------------------------------------------------------- #

def test_kd_kill_and_resume_is_bit_identical(trained, tmp_path):
    root, cfg, task, _ = trained
    teacher, _ = teachers.load_teacher_for(cfg, TASK, 8)
    cfg = make_cfg(tmp_path)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ra = train.kd_student(teacher, STUDENT, task, cfg, seed=1, out_dir=a, progress=False)

    class Killed(Exception):
        pass

    def kill_after(k):
        def cb(epoch, rec):
            if epoch == k:
                raise Killed
        return cb

    with pytest.raises(Killed):
        train.kd_student(teacher, STUDENT, task, cfg, seed=1, out_dir=b, progress=False, on_epoch_end=kill_after(2))
    assert safe_torch_load(b / "checkpoint.pth.tar")["epoch"] == 2 and not (b / "result.json").exists()
    rb = train.kd_student(teacher, STUDENT, task, cfg, seed=1, out_dir=b, progress=False)

    # killed after epoch 1 with no checkpoint yet (checkpoint_every=2): starts over, log stays consistent
    cfg2 = make_cfg(tmp_path, "train.checkpoint_every=2")
    with pytest.raises(Killed):
        train.kd_student(teacher, STUDENT, task, cfg2, seed=1, out_dir=c, progress=False, on_epoch_end=kill_after(1))
    assert not (c / "checkpoint.pth.tar").exists()
    rc = train.kd_student(teacher, STUDENT, task, cfg2, seed=1, out_dir=c, progress=False)

    wa = _weights(a / "checkpoint.pth.tar")
    for d in (b, c):
        wd = _weights(d / "checkpoint.pth.tar")
        assert wa.keys() == wd.keys() and all(torch.equal(wa[k], wd[k]) for k in wa)
        assert _epoch_records(d) == _epoch_records(a)
        assert torch.equal(_weights(d / "model_best.pth.tar")["fc.weight"], _weights(a / "model_best.pth.tar")["fc.weight"])
    for r in (rb, rc):
        assert (r["final_acc"], r["best_acc"], r["final_loss"]) == (ra["final_acc"], ra["best_acc"], ra["final_loss"])
    assert any(x.get("event") == "resume" for x in read_jsonl(b / "metrics.jsonl"))
    rows = (tmp_path / "runs" / "result.csv").read_text().splitlines()
    assert len(rows) == 4                                                     # header + one row per finished run
    # the KD test loss is the KD criterion (alpha*CE + (1-alpha)*T^2*softCE), far above a plain CE
    assert ra["final_loss"] > 5.0

    # a different student in the same run directory is refused, naming the file
    other = Arch([1, 1, 1, 1], [[8], [16], [24], [32]])
    with pytest.raises(CheckpointError, match=r"result\.json holds architecture"):
        train.kd_student(teacher, other, task, cfg, seed=1, out_dir=b, progress=False)
    (b / "result.json").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint\.pth\.tar holds architecture"):
        train.kd_student(teacher, other, task, cfg, seed=1, out_dir=b, progress=False)


def test_distill_in_memory_writes_nothing_and_repeats_exactly(trained, tmp_path, monkeypatch):
    root, cfg, task, _ = trained
    teacher, _ = teachers.load_teacher_for(cfg, TASK, 8)
    cfg = make_cfg(tmp_path, "kd.epochs=2")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    from dass.remap import remapped_student

    results, weights = [], []
    for _ in range(2):
        torch.manual_seed(0)
        student = remapped_student(teacher, STUDENT)
        results.append(train.distill(teacher, student, task, cfg, seed=5, out_dir=None, progress=False))
        weights.append({k: v.clone() for k, v in student.state_dict().items()})
    for r in results:
        r.pop("seconds")
    assert results[0] == results[1] and results[0]["checkpoint"] is None
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert list(tmp_path.rglob("*")) == [cwd]                                 # not a single file written
    # the student really trained (weights moved away from the remapped teacher slice)
    assert not torch.equal(weights[0]["fc.weight"], remapped_student(teacher, STUDENT).fc.weight)


def test_kd_seeds_summary(trained, tmp_path):
    root, cfg, task, _ = trained
    teacher, _ = teachers.load_teacher_for(cfg, TASK, 8)
    cfg = make_cfg(tmp_path, "kd.epochs=1")
    s = train.kd_seeds(teacher, STUDENT, task, cfg, method="dass", progress=False)
    base = tmp_path / "runs" / "kd" / TASK / runs.arch_slug(STUDENT)
    assert base.name == "6_12-16_18_32"
    assert sorted(p.name for p in base.iterdir()) == ["seed1", "seed2", "summary.json"]
    best = [r["best_acc"] for r in s["runs"]]
    assert s["seeds"] == [1, 2] and s["best_acc_mean"] == pytest.approx(np.mean(best))
    assert s["best_acc_std"] == pytest.approx(np.std(best, ddof=1)) and s["std"] == "sample (ddof=1)"
    assert json.loads((base / "summary.json").read_text())["best_acc_mean"] == s["best_acc_mean"]
    rows = (tmp_path / "runs" / "result.csv").read_text().splitlines()
    assert [r.split(",")[1:3] for r in rows[1:]] == [["dass", "1"], ["dass", "2"]]


# --------------------------------------------------------------------------------------------- #
# checkpoints from elsewhere
# --------------------------------------------------------------------------------------------- #

def test_teacher_checkpoints_are_checked(tmp_path):
    cfg = make_cfg(tmp_path)
    space = SearchSpace.from_config(cfg)
    d = runs.teacher_dir(cfg, TASK)
    path = d / "model_best.pth.tar"
    with pytest.raises(CheckpointError, match="does not exist.*train-teacher --task synth-0"):
        teachers.load_teacher_for(cfg, TASK, 8)

    torch.manual_seed(0)
    good = ResNet(space.teacher(), 8, space.stage_strides)
    # the authors' layout: DataParallel prefixes, accuracy as a 1-element tensor, extra keys
    authors = {"state_dict": {f"module.{k}": v for k, v in good.state_dict().items()},
               "best_acc": torch.tensor([63.25]), "epoch": 179, "optimizer": {}}
    atomic_torch_save(authors, path)
    model, acc = teachers.load_teacher_for(cfg, TASK, 8)
    assert acc == pytest.approx(63.25)
    assert torch.equal(model.fc.weight, good.fc.weight)

    cases = [
        ({"state_dict": ResNet(STUDENT, 8).state_dict(), "best_acc": 50.0}, "the checkpoint is for another"),
        ({"state_dict": ResNet(space.teacher(), 5).state_dict(), "best_acc": 50.0}, "class count"),
        ({**authors, "arch": STUDENT.to_dict()}, "holds architecture"),
        ({**authors, "num_classes": 5}, "trained for 5 classes"),
        ({"state_dict": good.state_dict()}, "no 'best_acc'"),
    ]
    for obj, msg in cases:
        atomic_torch_save(obj, path)
        with pytest.raises(CheckpointError, match=msg) as e:
            teachers.load_teacher_for(cfg, TASK, 8)
        assert str(path) in str(e.value) and "\n" not in str(e.value)

    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        teachers.load_teacher_for(cfg, TASK, 8)
    path.unlink()
    atomic_torch_save({"epoch": 1}, d / "checkpoint.pth.tar")  # a run that was killed part-way
    assert teachers.teacher_status(cfg, TASK) == "incomplete"
    with pytest.raises(CheckpointError, match="still training"):
        teachers.load_teacher_for(cfg, TASK, 8)


# --------------------------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------------------------- #

def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv,msg", [
    (["train-teacher", "--task", "nope"], "unknown task 'nope'"),
    (["kd", "--task", "nope", "--arch", "{}"], "unknown task 'nope'"),
    (["kd", "--task", TASK, "--arch", "{depth_config: [1]"], "--arch is not valid JSON"),
    (["kd", "--task", TASK, "--arch", '{"depth_config": [1,1,1,1]}'], "needs keys 'depth_config' and 'channel_widths'"),
    (["kd", "--task", TASK, "--arch", '{"depth_config":[1,1,1,1],"channel_widths":[[9],[16],[24],[32]]}'],
     "width 9 is not one of"),
    (["kd", "--task", TASK, "--from-search"], "obtained_net_index.yaml does not exist"),
    (["kd", "--task", TASK, "--archs", "missing.json"], "students file missing.json does not exist"),
    (["kd", "--task", TASK, "--arch", '{"depth_config":[1,1,1,1],"channel_widths":[[8],[16],[24],[32]]}',
      "--seeds", "1,x"], "--seeds must be comma-separated integers"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, msg):
    rc, out, err = _cli(capsys, *argv, "--config", "configs/demo.yaml", f"search.out={tmp_path}/search")
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and msg in err


def test_cli_train_teacher_then_kd(capsys, tmp_path, monkeypatch):
    import dass.data.tasks

    task = tiny_task(n_train=64, n_test=32)
    monkeypatch.setattr(dass.data.tasks, "load_task", lambda name, cfg: task if name == TASK else None)
    monkeypatch.setattr(dass.data.tasks, "require_task_files", lambda cfg, names, **k: None)   # the data is in memory
    common = ["--config", "configs/demo.yaml", f"run.out_dir={tmp_path}/runs", f"run.checkpoint_dir={tmp_path}/ck",
              f"search.out={tmp_path}/search", "teacher.epochs=1", "kd.epochs=1", "teacher.batch_size=32",
              "kd.batch_size=32"]
    rc, out, _ = _cli(capsys, "train-teacher", "--task", TASK, *common)
    assert rc == 0 and f"{TASK}" in out and "trained" in out
    rc, out, _ = _cli(capsys, "train-teacher", "--task", TASK, *common)
    assert rc == 0 and "skipped (trained)" in out

    search = tmp_path / "search"
    search.mkdir()
    (search / "obtained_net_index.yaml").write_text(yaml.safe_dump({"net_index": {TASK: {"dass": 1}}}))
    other = Arch([1, 1, 1, 1], [[8], [16], [24], [32]])
    # entry 1 in the authors' tuple form (flops, params, depth_config, channel_widths)
    torch.save([other.to_dict(), (1.0, 2.0, list(STUDENT.depths), [list(w) for w in STUDENT.widths])],
               search / f"{TASK}_candidates.pt")
    rc, out, _ = _cli(capsys, "kd", "--task", TASK, "--from-search", "--seeds", "1,2", *common)
    assert rc == 0 and "searched student #1 by dass: 6|12-16|18|32" in out and "+-" in out
    summary = json.loads((tmp_path / "runs" / "kd" / TASK / "6_12-16_18_32" / "summary.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["method"] == "dass"

    archs = tmp_path / "selected.json"
    archs.write_text(json.dumps([other.to_dict(), STUDENT.to_dict()]))
    rc, out, _ = _cli(capsys, "kd", "--task", TASK, "--archs", str(archs), *common)
    assert rc == 0
    table = (tmp_path / "runs" / "kd" / TASK / "selected.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("net_index,seed,arch")
    # STUDENT seed 0 is a new run; seeds 1, 2 came from --from-search
    assert sorted(p.name for p in (tmp_path / "runs" / "kd" / TASK / "6_12-16_18_32").iterdir()) == [
        "seed0", "seed1", "seed2", "summary.json"]
    csv_rows = (tmp_path / "runs" / "result.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in csv_rows[1:]] == ["teacher", "dass", "dass", "selected", "selected"]


# --------------------------------------------------------------------------------------------- #
# CUDA
# --------------------------------------------------------------------------------------------- #

@pytest.mark.gpu
def test_cuda_fast_path(tmp_path):
    cfg = make_cfg(tmp_path, "run.device=cuda", "train.amp=auto", "teacher.epochs=2", "kd.epochs=2")
    dev = torch.device("cuda")
    task = tiny_task()
    r = train.train_teacher(task, cfg, device=dev, progress=False)
    assert 0 <= r["best_acc"] <= 100 and np.isfinite(r["final_loss"])
    assert recipe.amp_dtype(cfg, dev) in (torch.bfloat16, torch.float16)
    teacher, acc = teachers.load_teacher_for(cfg, TASK, 8, dev)
    rk = train.kd_student(teacher, STUDENT, task, cfg, seed=1, device=dev, out_dir=None, progress=False)
    assert np.isfinite(rk["final_loss"])
    # the preloaded batch path issues no blocking host<->device copies per step
    loader = BatchLoader(task.train_images, task.train_labels, 32, 16, train=True, device=dev, pad=2, preload=True)
    assert loader.preloaded
    batches = iter(loader)
    next(batches)  # the one transfer of the epoch
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches:
            assert x.is_cuda and y.is_cuda
    finally:
        torch.cuda.set_sync_debug_mode(0)
