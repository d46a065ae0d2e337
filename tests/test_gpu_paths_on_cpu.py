"""Precision defaults (the authors' fp32 ground truth) and the GPU code paths exercised on CPU: autocast,
channels_last, the on-device prefetch path, DDP over gloo and torch.compile, each at a tiny size."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
from test_train import STUDENT, make_cfg, tiny_task

from dass.config import load_config
from dass.nets import ResNet
from dass.remap import remapped_student
from dass.space import SearchSpace
from dass.train import checkpoints
from dass.train import engine as train
from dass.train import recipe

CUDA = torch.device("cuda")


# --------------------------------------------------------------------------------------------- #
# precision switches
# --------------------------------------------------------------------------------------------- #

def test_paper_ground_truth_is_fp32_deterministic_and_speed_switches_are_opt_in():
    paper = load_config("configs/paper.yaml")
    assert (paper.train.amp, paper.train.channels_last, paper.train.cudnn_benchmark) == ("off", False, False)
    assert load_config(None).train == paper.train                    # the built-in defaults are the paper's
    assert recipe.amp_dtype(paper, CUDA) is None                      # no autocast even on a GPU
    fast = load_config("configs/paper.yaml", ["train.amp=auto", "train.cudnn_benchmark=true"])
    assert recipe.amp_dtype(fast, CUDA) in (torch.bfloat16, torch.float16) or not torch.cuda.is_available()
    demo = load_config("configs/demo.yaml")
    assert demo.train.channels_last and demo.train.amp == "off"


def test_cudnn_is_deterministic_unless_benchmark_is_asked_for():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        recipe.set_cudnn(load_config("configs/paper.yaml"), CUDA)
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (False, True)
        recipe.set_cudnn(load_config("configs/paper.yaml", ["train.cudnn_benchmark=true"]), CUDA)
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (True, False)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


# --------------------------------------------------------------------------------------------- #
# the engine's GPU paths on CPU
# --------------------------------------------------------------------------------------------- #

def _teacher(cfg, k=8):
    space = SearchSpace.from_config(cfg)
    torch.manual_seed(0)
    return checkpoints.freeze(ResNet(space.teacher(), k, space.stage_strides))


def _kd(tmp_path, *over, task=None):
    cfg = make_cfg(tmp_path, "kd.epochs=1", "kd.eval_every=1", *over)
    task = task or tiny_task(n_train=64, n_test=32)
    r = train.kd_student(_teacher(cfg), STUDENT, task, cfg, seed=1, out_dir=None, progress=False)
    return r


def test_bf16_autocast_on_cpu_runs_and_changes_the_numbers(tmp_path):
    cfg = make_cfg(tmp_path, "train.amp=bf16")
    assert recipe.amp_dtype(cfg, torch.device("cpu")) == torch.bfloat16
    fp32, bf16 = _kd(tmp_path), _kd(tmp_path, "train.amp=bf16")
    assert np.isfinite(bf16["final_loss"]) and bf16["final_loss"] != fp32["final_loss"]
    assert bf16["final_loss"] == pytest.approx(fp32["final_loss"], rel=0.05)


def test_channels_last_batches_and_results(tmp_path):
    from dass.data.tasks import make_loader

    task = tiny_task(n_train=64, n_test=32)
    cfg = make_cfg(tmp_path, "train.channels_last=true")
    x, _ = next(iter(make_loader(task, cfg, "train", 16)))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    nhwc, nchw = _kd(tmp_path, "train.channels_last=true", task=task), _kd(tmp_path, "train.channels_last=false",
                                                                            task=task)
    assert nhwc["final_loss"] == pytest.approx(nchw["final_loss"], rel=1e-4)   # a layout, not a recipe


def test_preloaded_on_device_path_trains_like_the_host_path(tmp_path):
    """``preload`` is the CUDA path (uint8 data on the device, draws moved in one transfer); forced on CPU
    it must give the same run as the host loader, step for step."""
    from dass.data import tasks as data_mod

    task = tiny_task(n_train=64, n_test=32)
    base = _kd(tmp_path, task=task)
    real = data_mod.make_loader
    try:
        data_mod.make_loader = lambda *a, **k: real(*a, **{**k, "preload": True})
        pre = _kd(tmp_path, task=task)
    finally:
        data_mod.make_loader = real
    assert pre["final_loss"] == base["final_loss"] and pre["best_acc"] == base["best_acc"]


@pytest.mark.parametrize("backend", [
    "aot_eager",    # dynamo tracing + AOT autograd through the engine, no C++ code generation (seconds)
    pytest.param("inductor", marks=[pytest.mark.slow, pytest.mark.skipif(
        not os.environ.get("DASS_SLOW"), reason="inductor compiles C++ for ~1 min on 2 cores; DASS_SLOW=1 runs it")]),
])
def test_torch_compile_at_a_tiny_size(tmp_path, monkeypatch, backend):
    real, calls = torch.compile, []
    monkeypatch.setattr(torch, "compile", lambda m, **k: calls.append(m) or real(m, backend=backend, **k))
    torch._dynamo.reset()
    eager = _kd(tmp_path)
    assert not calls
    compiled = _kd(tmp_path, "train.compile=true")
    assert len(calls) == 1
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-3)


# --------------------------------------------------------------------------------------------- #
# DDP over gloo: two CPU processes, as torchrun would start them
# --------------------------------------------------------------------------------------------- #

def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    cfg = make_cfg(root, "kd.epochs=1", "kd.eval_every=1")
    recipe.setup_device(cfg)
    teacher = _teacher(cfg)
    torch.manual_seed(1)
    student = remapped_student(teacher, STUDENT, cfg.kd.remap)
    r = train.distill(teacher, student, tiny_task(n_train=64, n_test=32), cfg, seed=1, out_dir=None, progress=False)
    torch.save({"result": r, "state": student.state_dict()}, os.path.join(root, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_over_gloo_keeps_the_ranks_in_step(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in (0, 1))
    assert a["result"]["best_acc"] == b["result"]["best_acc"]                 # rank 0's evaluation, broadcast
    for k, v in a["state"].items():
        if "running" not in k and "num_batches" not in k:                       # BN statistics are per rank
            assert torch.equal(v, b["state"][k]), k                            # all-reduced gradients: same weights
    assert np.isfinite(a["result"]["final_loss"])
