"""Meta-learning with teacher-guided adaptation (docs/method.md#meta-learning): meta-gradients, training, resume, CLI."""
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from test_plots import marker_counts
from torch.func import functional_call

from dass.config import PredictorConfig, load_config
from dass.db.records import TeacherRecord, load_records, load_split_records
from dass.errors import CheckpointError, ConfigError, DataError
from dass.io import read_jsonl
from dass.predictor.checkpoint import load_predictor
from dass.predictor.inference import evaluate_task, predict
from dass.predictor.inner import adapt, init_inner_lrs, inner_update
from dass.predictor.trainer import MetaTrainer, train_or_reuse
from dass.predictor.model import Predictor
from dass.testing import fixture_db_for_config

ROOT = Path(__file__).resolve().parent.parent

# Mean meta-test Spearman of the seeded short meta-training below (generated once, then frozen; 0.709 until the
# head read its inputs in the authors' order S | A | T instead of S | T | A).
GOLDEN_SPEARMAN = 0.721


def small_cfg(tmp_path, *extra):
    return load_config(ROOT / "configs" / "demo.yaml", [
        "tasks.meta_train=[t0,t1,t2,t3]", "tasks.meta_valid=[v0]", "tasks.meta_test=[x0,x1]",
        "db.num_students=16", f"db.out={tmp_path / 'db'}", f"meta.out={tmp_path / 'meta'}",
        "predictor.func_hidden=16", "predictor.func_dim=16", "predictor.arch_dim=8", "predictor.head_hidden=8",
        "predictor.target_norm=meta_train", "predictor.dataset_feature_dim=16", "predictor.dataset_dim=8",
        "predictor.dataset_heads=2",
        "meta.episodes=40", "meta.eval_every=20", "meta.n_query=8", "meta.outer_lr=0.005", "run.device=cpu", *extra])


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one intra-op thread is fastest


@pytest.fixture
def db(tmp_path):
    cfg = small_cfg(tmp_path)
    fixture_db_for_config(cfg)          # written in the on-disk format, read back below
    return cfg


def _splits(cfg):
    return tuple(load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test"))


# --------------------------------------------------------------------------------------------- #
# meta-gradients
# --------------------------------------------------------------------------------------------- #

def _tiny_problem():
    torch.manual_seed(0)
    cfg = PredictorConfig(inputs=["S", "T", "A"], func_hidden=6, func_dim=4, arch_dim=3, head_hidden=4)
    model = Predictor(cfg, 5, 3).double()
    g = torch.Generator().manual_seed(1)
    teacher = TeacherRecord(arch=None, arch_enc=torch.rand(5, generator=g, dtype=torch.float64),
                            fmap=torch.rand(3, 2, 2, generator=g, dtype=torch.float64) + 0.2, acc=1.5)
    q = (torch.rand(6, 3, 2, 2, generator=g, dtype=torch.float64), torch.rand(6, 5, generator=g, dtype=torch.float64),
         torch.rand(6, generator=g, dtype=torch.float64))
    lrs = {k: torch.full_like(v, 0.3).requires_grad_(True) for k, v in model.named_parameters()}
    return model, teacher, q, lrs


def _meta_loss(model, params, lrs, teacher, q, second_order):
    p = adapt(model, params, lrs, teacher, None, create_graph=second_order)
    pred = functional_call(model, p, (q[0], teacher.fmap, q[1], None))
    return ((pred - q[2]) ** 2).mean()


def test_second_order_meta_gradient_matches_finite_differences_and_first_order_differs():
    model, teacher, q, lrs = _tiny_problem()
    params = dict(model.named_parameters())
    names = list(params)
    so = torch.autograd.grad(_meta_loss(model, params, lrs, teacher, q, True), [params[k] for k in names])
    fo = torch.autograd.grad(_meta_loss(model, params, lrs, teacher, q, False), [params[k] for k in names])
    eps = 1e-6
    g = torch.Generator().manual_seed(3)
    worst_so, worst_fo = 0.0, 0.0
    for k, gs, gf in zip(names, so, fo):
        flat = params[k].detach().reshape(-1)
        for j in torch.randperm(flat.numel(), generator=g)[:4].tolist():
            vals = []
            for sgn in (1.0, -1.0):
                p2 = {n: v.detach().clone() for n, v in params.items()}
                p2[k].view(-1)[j] += sgn * eps
                p2 = {n: v.requires_grad_(True) for n, v in p2.items()}
                vals.append(float(_meta_loss(model, p2, lrs, teacher, q, True).detach()))
            fd = (vals[0] - vals[1]) / (2 * eps)
            scale = max(1e-3, abs(fd))
            worst_so = max(worst_so, abs(float(gs.reshape(-1)[j]) - fd) / scale)
            worst_fo = max(worst_fo, abs(float(gf.reshape(-1)[j]) - fd) / scale)
    assert worst_so < 1e-5          # exact meta-gradient
    assert worst_fo > 1e-2          # the first-order approximation is not
    diff = max(float((a - b).abs().max()) for a, b in zip(so, fo))
    assert diff > 1e-3


@pytest.mark.parametrize("second_order", [True, False])
def test_inner_learning_rates_receive_gradients(second_order):
    model, teacher, q, lrs = _tiny_problem()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(_meta_loss(model, params, lrs, teacher, q, second_order), list(lrs.values()))
    assert all(torch.isfinite(x).all() for x in grads)
    assert sum(int((x != 0).any()) for x in grads) >= len(grads) - 2   # (a dead ReLU may zero a few)
    # and one inner step moves the parameters by exactly -lr * grad of the teacher MSE
    p = adapt(model, params, lrs, teacher, None, create_graph=False)
    pred = functional_call(model, params, (teacher.fmap[None], teacher.fmap, teacher.arch_enc[None], None))
    g = torch.autograd.grad(((pred - teacher.acc) ** 2).mean(), list(params.values()))
    for (k, v), gk in zip(params.items(), g):
        assert torch.allclose(p[k], v - lrs[k] * gk)


def test_zero_inner_steps_leave_the_parameters_and_config_asks_for_at_least_one(tmp_path):
    model, teacher, q, lrs = _tiny_problem()
    params = dict(model.named_parameters())
    p = inner_update(model, params, lrs, teacher.fmap, teacher.arch_enc, torch.tensor([teacher.acc]), None,
                     steps=0, second_order=True)
    assert p == params
    two = adapt(model, params, lrs, teacher, None, create_graph=False, steps=2)
    one = adapt(model, adapt(model, params, lrs, teacher, None, create_graph=False), lrs, teacher, None,
                create_graph=False)
    assert all(torch.equal(two[k], one[k]) for k in params)
    with pytest.raises(ConfigError, match="meta.inner_steps.*meta.adapt=false"):
        load_config("configs/demo.yaml", ["meta.inner_steps=0"])


def test_init_inner_lrs_one_per_parameter_entry():
    model, *_ = _tiny_problem()
    lrs = init_inner_lrs(model, 0.005)
    assert set(lrs) == {k for k, _ in model.named_parameters()}
    assert all(v.shape == p.shape and v.requires_grad and torch.all(v == 0.005)
               for (k, p), v in zip(model.named_parameters(), lrs.values()))


@pytest.mark.parametrize("extra", [[], ["meta.second_order=false"], ["meta.adapt=false"]])
def test_vmapped_meta_batch_equals_the_per_task_loop(db, tmp_path, extra):
    tr, va, te = _splits(db)
    cfg = small_cfg(tmp_path, *extra)
    a = MetaTrainer(cfg, tr, va, te, tmp_path / "a", "cpu", progress=False)
    b = MetaTrainer(cfg, tr, va, te, tmp_path / "b", "cpu", progress=False)
    b.batched = False
    assert a.batched
    for _ in range(2):
        la, lb = a._train_episode(), b._train_episode()
        assert la == pytest.approx(lb, rel=1e-5)
    for (k, x), (_, y) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.allclose(x, y, atol=1e-5), k


# --------------------------------------------------------------------------------------------- #
# meta-training
# --------------------------------------------------------------------------------------------- #

def test_seeded_meta_training_gives_the_golden_meta_test_spearman(db):
    tr, va, te = _splits(db)
    s = MetaTrainer(db, tr, va, te, db.meta.out, "cpu", progress=False).run()
    pred = load_predictor(s["checkpoint"])
    info = pred.settings
    assert info["adapt"] and info["second_order"] and info["episode"] == s["best_episode"]
    rhos = [evaluate_task(predict(pred, rec), rec)["spearman"] for rec in te]
    mean = sum(rhos) / len(rhos)
    print("meta-test Spearman", rhos, mean)
    if GOLDEN_SPEARMAN is None:
        pytest.fail(f"freeze GOLDEN_SPEARMAN = {mean:.3f}")
    assert round(mean, 3) == GOLDEN_SPEARMAN
    # the records went through the on-disk format and the metrics log has one record per evaluation
    recs = read_jsonl(Path(db.meta.out) / "metrics.jsonl")
    assert [r["episode"] for r in recs] == [0, 20, 40]
    assert set(recs[-1]["test"]) == {"x0", "x1"} and set(recs[-1]["valid"]) == {"v0"}
    assert (Path(db.meta.out) / "config.yaml").is_file()


def test_kill_and_resume_reproduces_the_uninterrupted_run_bit_for_bit(db, tmp_path, monkeypatch):
    tr, va, te = _splits(db)
    cfg = small_cfg(tmp_path, "meta.episodes=12", "meta.eval_every=4")
    full = MetaTrainer(cfg, tr, va, te, tmp_path / "full", "cpu", progress=False)
    full.run()

    calls = {"n": 0}
    orig = MetaTrainer._train_episode

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 7:            # killed mid-interval: 6 episodes done, checkpoint at 4
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(MetaTrainer, "_train_episode", dying)
    with pytest.raises(KeyboardInterrupt):
        MetaTrainer(cfg, tr, va, te, tmp_path / "killed", "cpu", progress=False).run()
    monkeypatch.setattr(MetaTrainer, "_train_episode", orig)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["episode"] == 4
    assert [r["episode"] for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")] == [0, 4]
    resumed = MetaTrainer(cfg, tr, va, te, tmp_path / "killed", "cpu", progress=False)
    resumed.run(resume=True)

    for (k, x), (_, y) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(x, y), k
    for k in full.inner_lrs:
        assert torch.equal(full.inner_lrs[k], resumed.inner_lrs[k])

    def strip(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(path)]

    assert strip(tmp_path / "full" / "metrics.jsonl") == strip(tmp_path / "killed" / "metrics.jsonl")
    # a finished run is reused as it is (nothing trained, nothing rewritten); one with other settings refuses
    # to resume
    done = small_cfg(tmp_path, "meta.episodes=12", "meta.eval_every=4", f"meta.out={tmp_path / 'full'}")
    before = {p.name: p.read_bytes() for p in (tmp_path / "full").glob("*.pt")}
    monkeypatch.setattr(MetaTrainer, "run", lambda self, resume=False: pytest.fail("a finished run was retrained"))
    assert train_or_reuse(done, tr, va, te, "cpu", progress=False) == tmp_path / "full" / "best.pt"
    assert {p.name: p.read_bytes() for p in (tmp_path / "full").glob("*.pt")} == before
    monkeypatch.undo()
    other = small_cfg(tmp_path, "meta.episodes=12", "meta.eval_every=4", "meta.outer_lr=0.01")
    with pytest.raises(CheckpointError) as e:
        MetaTrainer(other, tr, va, te, tmp_path / "full", "cpu", progress=False).run(resume=True)
    assert "\n" not in str(e.value)


@pytest.mark.gpu
def test_meta_training_on_cuda_matches_cpu(db, tmp_path):
    tr, va, te = _splits(db)
    cfg = small_cfg(tmp_path, "meta.episodes=4", "meta.eval_every=2")
    cpu = MetaTrainer(cfg, tr, va, te, tmp_path / "cpu", "cpu", progress=False)
    gpu = MetaTrainer(cfg, tr, va, te, tmp_path / "gpu", "cuda", progress=False)
    cpu.run(), gpu.run(resume=False)
    pred = load_predictor(tmp_path / "gpu" / "best.pt", "cuda")
    assert next(pred.model.parameters()).is_cuda and all(v.is_cuda for v in pred.inner_lrs.values())
    p_cpu, p_gpu = predict(cpu.current(), te[0]), predict(gpu.current(), te[0])
    assert p_gpu.device.type == "cpu" and torch.allclose(p_cpu, p_gpu, atol=1e-2)


def test_no_adaptation_and_first_order_variants_train(db, tmp_path):
    tr, va, te = _splits(db)
    for extra in (["meta.adapt=false"], ["meta.second_order=false"], ["predictor.inputs=[D,A]", "meta.adapt=false"],
                  ["predictor.inputs=[S,T,A,D]"]):
        cfg = small_cfg(tmp_path, "meta.episodes=2", "meta.eval_every=2", *extra)
        t = MetaTrainer(cfg, tr, va, te, tmp_path / "_".join(extra), "cpu", progress=False)
        s = t.run()
        pred = load_predictor(s["checkpoint"])
        assert bool(pred.inner_lrs) == cfg.meta.adapt and pred.settings["adapt"] == cfg.meta.adapt == pred.adapt
        assert pred.settings["second_order"] == cfg.meta.second_order
        assert predict(pred, te[0]).shape == (len(te[0]),)


def test_predict_adapts_on_the_teacher_and_accepts_unlabelled_candidates(db, tmp_path):
    tr, va, te = _splits(db)
    t = MetaTrainer(db, tr, va, te, tmp_path / "p", "cpu", progress=False)
    rec = te[0]
    import dataclasses
    live = t.current()
    frozen = dataclasses.replace(live, settings={**live.settings, "adapt": False})
    adapted, plain = predict(live, rec), predict(frozen, rec)
    assert adapted.shape == plain.shape == (len(rec),) and not torch.allclose(adapted, plain)
    # moving the teacher's accuracy moves the adapted predictions towards it
    hi = dataclasses.replace(rec, teacher=dataclasses.replace(rec.teacher, acc=rec.teacher.acc + 30))
    assert predict(live, hi).mean() > adapted.mean()
    cand = dataclasses.replace(rec, best_acc=torch.full((len(rec),), math.nan))
    assert torch.equal(predict(live, cand), adapted)
    assert t.model.training   # predict restores the mode


def test_evaluate_task_hand_computed(db):
    rec = load_records(db.db.out, "meta_test", "x0")
    rec = rec.subset(list(range(6)))
    rec.best_acc = torch.tensor([50.0, 60.0, 55.0, 70.0, 65.0, float("nan")])
    r = evaluate_task(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), rec)
    # ranks of true acc (first 5): 1, 3, 2, 5, 4 vs 1..5 -> rho = 1 - 6*4/(5*24) = 0.8
    assert r["spearman"] == pytest.approx(0.8) and r["n"] == 5
    assert r["top1_acc"] == 65.0 and r["top5_acc"] == 70.0 and r["best_acc"] == 70.0
    assert r["kendall"] == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------- #
# bad inputs
# --------------------------------------------------------------------------------------------- #

def test_bad_inputs_give_one_line_errors(db, tmp_path):
    missing = small_cfg(tmp_path, f"db.out={tmp_path / 'nowhere'}")
    with pytest.raises(DataError) as e:
        load_split_records(missing, "meta_train")
    assert "nowhere" in str(e.value) and "\n" not in str(e.value)

    tr, va, te = _splits(db)
    s = MetaTrainer(small_cfg(tmp_path, "meta.episodes=2", "meta.eval_every=2"), tr, va, te, tmp_path / "m", "cpu",
                    progress=False).run()
    pred = load_predictor(s["checkpoint"])
    other = te[0].subset([0, 1, 2])
    other.arch_enc = torch.zeros(3, te[0].arch_enc.shape[1] + 4)
    with pytest.raises(CheckpointError) as e:
        predict(pred, other)
    assert "encodings of length" in str(e.value) and "\n" not in str(e.value)

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_predictor(bad)
    torch.save({"model": {}, "spec": {"enc_dim": 3}}, tmp_path / "nospec.pt")
    with pytest.raises(CheckpointError):
        load_predictor(tmp_path / "nospec.pt")


# --------------------------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------------------------- #

def _main(capsys, *args):
    """``main.py ARGS`` in-process (importing torch once per test run, not per call)."""
    from dass.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_cli_meta_train_then_meta_test_writes_csv_and_svgs(db, tmp_path, capsys):
    ov = [f"db.out={db.db.out}", f"meta.out={db.meta.out}", "tasks.meta_train=[t0,t1,t2,t3]",
          "tasks.meta_valid=[v0]", "tasks.meta_test=[x0,x1]", "predictor.func_hidden=8", "predictor.func_dim=8",
          "predictor.arch_dim=8", "predictor.head_hidden=8", "predictor.target_norm=meta_train",
          "predictor.dataset_feature_dim=16", "predictor.dataset_dim=8", "predictor.dataset_heads=2",
          "meta.episodes=4", "meta.eval_every=2", "meta.n_query=8", "run.device=cpu"]
    r = _main(capsys, "meta-test", "--config", "configs/demo.yaml", *ov)
    assert r.returncode == 2 and "meta-train first" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _main(capsys, "meta-train", "--config", "configs/demo.yaml", *ov, f"db.out={tmp_path / 'nodb'}")
    assert r.returncode == 2 and "nodb" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _main(capsys, "meta-train", "--config", "configs/demo.yaml", "--no-progress", *ov)
    assert r.returncode == 0, r.stderr
    r = _main(capsys, "meta-train", "--config", "configs/demo.yaml", *ov)
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _main(capsys, "meta-train", "--config", "configs/demo.yaml", "--resume", *ov)   # finished: nothing to do
    assert r.returncode == 0 and "4 episodes" in r.stdout
    r = _main(capsys, "meta-test", "--config", "configs/demo.yaml", "--no-progress",
              "--baselines", "random,macs,params,diswot,dass-no-adapt", *ov)
    assert r.returncode == 0, r.stderr
    out = Path(db.meta.out) / "meta_test"
    import csv
    rows = list(csv.DictReader(open(out / "results.csv")))
    methods = ["dass", "random", "macs", "params", "diswot", "dass-no-adapt"]
    assert [(x["task"], x["method"]) for x in rows] == [(t, m) for t in ("x0", "x1", "mean") for m in methods]
    assert set(rows[0]) >= {"task", "method", "spearman", "pearson", "kendall", "top1", "top5", "best"}
    for t in ("x0", "x1"):
        for m in methods:
            counts, _ = marker_counts(out / f"{t}_{m}.svg")
            assert sum(counts.values()) == 16 and counts["top1"] == 1
    # the table printed for the user, and the scores behind it
    assert all(m in r.stdout for m in methods)
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(preds) == 2 * 16 * len(methods)
    macs_rows = [p for p in preds if p["method"] == "macs" and p["task"] == "x0"]
    rec = load_records(db.db.out, "meta_test", "x0")
    assert [float(p["score"]) for p in macs_rows] == rec.macs.tolist()
    assert (Path(db.meta.out) / "baselines" / "dass-no-adapt" / "best.pt").is_file()
    r = _main(capsys, "meta-test", "--config", "configs/demo.yaml", "--baselines", "nonsense", *ov)
    assert r.returncode == 2 and "nonsense" in r.stderr
    # the library entry point (used by the demo) returns the per-task rows and the statistics
    from dass.evaluate import run_meta_test

    rows = run_meta_test(load_config(ROOT / "configs" / "demo.yaml", ov), baselines="macs", progress=False,
                         out=tmp_path / "mt2").rows
    assert [(x["task"], x["method"]) for x in rows] == [(t, m) for t in ("x0", "x1") for m in ("dass", "macs")]
    assert (tmp_path / "mt2" / "results.csv").is_file()


def test_meta_test_over_seeds_in_two_processes_matches_one(db, tmp_path, capsys):
    """--meta-seeds meta-trains DaSS and each trained baseline once per seed; --workers 2 gives the same
    predictors as one process (each run is seeded and single-threaded)."""
    ov = [f"db.out={db.db.out}", f"meta.out={tmp_path / 'm'}", "tasks.meta_train=[t0,t1,t2,t3]",
          "tasks.meta_valid=[v0]", "tasks.meta_test=[x0,x1]", "predictor.func_hidden=8", "predictor.func_dim=8",
          "predictor.arch_dim=8", "predictor.head_hidden=8", "predictor.target_norm=meta_train",
          "meta.episodes=4", "meta.eval_every=2", "meta.n_query=8", "run.device=cpu", "train.num_threads=1"]
    args = ["meta-test", "--config", "configs/demo.yaml", "--no-progress", "--baselines", "macs,dass-no-adapt",
            "--meta-seeds", "0,1", "--resamples", "200"]
    r = _main(capsys, *args, "--workers", "2", *ov)
    assert r.returncode == 0, r.stderr
    assert "± " in r.stdout and any(v in r.stdout for v in ("not resolved", "better", "worse"))
    two = json.loads((tmp_path / "m" / "meta_test" / "stats.json").read_text())
    assert two["dass_seeds"]["runs"] == 2
    for name in ("dass", "dass-no-adapt"):
        assert all((tmp_path / "m" / "seeds" / name / f"seed{s}" / "best.pt").is_file() for s in (0, 1))
    import shutil
    shutil.rmtree(tmp_path / "m" / "seeds")
    r = _main(capsys, *args, *ov)
    assert r.returncode == 0, r.stderr
    one = json.loads((tmp_path / "m" / "meta_test" / "stats.json").read_text())
    assert one["dass_seeds"]["pooled_per_run"] == pytest.approx(two["dass_seeds"]["pooled_per_run"], abs=1e-6)
    r = _main(capsys, *args[:-4], "--meta-seeds", "0,x", *ov)
    assert r.returncode == 2 and "--meta-seeds" in r.stderr


def test_an_episode_draws_n_minus_1_from_a_task_with_at_most_n_query_students(db, tmp_path, monkeypatch):
    """The authors take randperm(N)[:n_s + n_q] and drop the first index (the support): a task of N <= n_query
    students gives N - 1 query students, a larger one n_query (the vmapped and the per-task paths alike)."""
    import dass.predictor.trainer as trainer

    assert trainer.query_size(8, 6) == 5 and trainer.query_size(8, 9) == 8 and trainer.query_size(8, 20) == 8
    tr, va, te = _splits(db)
    small = [r.subset(range(6)) for r in tr]                           # 6 students each, n_query = 8
    seen = []
    real = trainer.query_loss

    def spy(model, params, lrs, tm, te_, ta, fmaps, *rest):
        seen.append(fmaps.shape[0])
        return real(model, params, lrs, tm, te_, ta, fmaps, *rest)

    monkeypatch.setattr(trainer, "query_loss", spy)
    for vmapped in (True, False):
        seen.clear()
        t = trainer.MetaTrainer(small_cfg(tmp_path, f"meta.vmap_tasks={str(vmapped).lower()}"), small, va, te,
                                tmp_path / f"n-1-{vmapped}", "cpu", progress=False)
        assert t.batched == vmapped
        t._train_episode()
        assert seen and set(seen) == {5}, seen
