"""The training engine: teacher training and knowledge distillation (docs/method.md#teachers, #kd).

One loop serves both recipes; only the criterion differs:

- teacher: label-smoothed cross-entropy (``teacher.label_smoothing``), lr ``teacher.lr`` (or
  ``teacher.lr_meta_test`` for the unseen datasets' teachers);
- KD: :func:`dass.train.losses.kd_loss` against a frozen teacher in eval mode, the student initialised by
  parameter remapping (docs/method.md#remap).

Both use SGD (Nesterov, momentum, weight decay) with a cosine decay stepped every *iteration*
(``CosineAnnealingLR`` with ``T_max`` = epochs x iterations per epoch), evaluate on the test split
every ``eval_every`` epochs and at the last epoch, and record the final accuracy, the best accuracy
(max over evaluations) and the final loss (the run's criterion on the test split at the last
evaluation: CE for teachers, the KD loss for students, as the authors' logs record it).

Run directories (when ``out_dir`` is given): ``config.yaml`` (resolved config + git revision),
``metrics.jsonl`` (one record per epoch, append-only), ``checkpoint.pth.tar`` (everything needed to
resume: weights under the authors' key ``state_dict``, optimizer, scheduler, epoch, best so far, RNG
states), ``model_best.pth.tar`` (``state_dict``, ``best_acc``, ``epoch``, ``arch``, ``num_classes``),
``result.json``, and one row in ``<run.out_dir>/result.csv`` with the authors' columns
(``data, proxy, seed, best acc``) plus a few more. All writes are atomic. Re-running the same call
resumes from the last checkpoint (an epoch boundary); a finished run returns its stored result.

Determinism: the model init is seeded by ``seed`` (``torch.manual_seed``) and the batches by
``(seed, epoch)`` (:class:`dass.data.loader.BatchLoader`), so on CPU a run is bit-identical when repeated
and after a kill + resume.

Precision: by default fp32 with contiguous tensors and deterministic cuDNN, as the authors' ground truth;
``train.amp``, ``train.channels_last`` and ``train.cudnn_benchmark`` are opt-in speed switches.
On every device: optional channels_last tensors (``train.channels_last``), and for KD an optional
:class:`dass.train.logit_cache.TeacherLogitCache` through which the students of one task share the frozen
teacher's logits (the builder and the demo pass one; bench/RESULTS.md has the gain).

CUDA fast path: opt-in bf16 autocast (``train.amp``), the uint8 dataset preloaded on the GPU
with the epoch's random crops/flips drawn up front and moved in one transfer (no per-step host
synchronisation: losses and accuracies accumulate on the device and are read once per epoch),
optional ``torch.compile``. DDP when launched by ``torchrun`` (``WORLD_SIZE > 1``): every rank draws
the same global batch and trains on its ``rank::world`` slice, so the optimisation matches a
single-GPU run with the same global batch; only rank 0 evaluates and writes files.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..config import resolve_device, save_config
from ..data.tasks import TaskData, make_loader
from ..errors import ArchError, CheckpointError, ConfigError
from ..io import append_csv_row, append_jsonl, atomic_torch_save, read_json, safe_torch_load, truncate_jsonl, write_json
from ..metrics import mean_std
from ..nets import ResNet, check_state_dict, extract_state_dict, load_state_dict_strict, strip_module_prefix
from ..remap import remapped_student
from ..space import Arch, SearchSpace
from .logit_cache import TeacherLogitCache, stream_bytes, stream_key
from .losses import kd_loss, label_smoothed_ce

CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
METRICS = "metrics.jsonl"
RESULT = "result.json"
RESULT_CSV = "result.csv"
FORMAT = "dass-train-1"

EpochCallback = Callable[[int, dict], None]


# --------------------------------------------------------------------------------------------- #
# recipes
# --------------------------------------------------------------------------------------------- #

@dataclass(frozen=True)
class Recipe:
    """What a run optimises; stored in checkpoints so a resume with other settings is refused."""

    kind: str                   # "teacher" or "kd"
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    eval_every: int
    label_smoothing: float = 0.0
    temperature: float = 0.0
    alpha: float = 0.0
    heavy_aug: bool = False

    @classmethod
    def teacher(cls, cfg, meta_test: bool = False) -> "Recipe":
        t = cfg.teacher
        return cls("teacher", t.epochs, t.batch_size, t.lr_meta_test if meta_test else t.lr, t.momentum,
                   t.weight_decay, t.nesterov, t.eval_every, label_smoothing=t.label_smoothing,
                   heavy_aug=t.heavy_aug)

    @classmethod
    def kd(cls, cfg) -> "Recipe":
        k = cfg.kd
        return cls("kd", k.epochs, k.batch_size, k.lr, k.momentum, k.weight_decay, k.nesterov, k.eval_every,
                   temperature=k.temperature, alpha=k.alpha)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- #
# device, precision, distributed
# --------------------------------------------------------------------------------------------- #

def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def setup_device(cfg) -> torch.device:
    """The device of this process: ``run.device``, or ``cuda:LOCAL_RANK`` under torchrun.

    Under torchrun the process group is initialised here (NCCL on CUDA, gloo on CPU), once.
    """
    device = resolve_device(cfg.run.device)
    rank, world, local = dist_env()
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def amp_dtype(cfg, device: torch.device) -> Optional[torch.dtype]:
    """``train.amp``: auto = bf16 on CUDA (fp16 on GPUs without bf16), full precision on CPU."""
    mode = cfg.train.amp
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("config key 'train.amp' = fp16 needs a CUDA device; use bf16, auto or off")
        return torch.float16
    return torch.bfloat16


def set_cudnn(cfg, device: torch.device) -> None:
    """Deterministic cuDNN kernels, as the authors train (docs/method.md#kd), unless
    ``train.cudnn_benchmark`` asks for autotuned ones (faster, not bit-reproducible)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.train.cudnn_benchmark)
        torch.backends.cudnn.deterministic = not cfg.train.cudnn_benchmark


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------- #
# batches
# --------------------------------------------------------------------------------------------- #

def make_loaders(task: TaskData, cfg, batch_size: int, seed: int, device: torch.device,
                 channels_last: bool = False, heavy: bool = False) -> tuple:
    """Train and test loaders for ``task`` (:func:`dass.data.tasks.make_loader`); ``heavy`` adds the authors'
    heavy augmentation to the train split."""
    return tuple(make_loader(task, cfg, split=split, batch_size=batch_size, seed=seed, device=device,
                             train=split == "train", channels_last=channels_last, heavy=heavy and split == "train")
                 for split in ("train", "test"))


# --------------------------------------------------------------------------------------------- #
# evaluation
# --------------------------------------------------------------------------------------------- #

@torch.no_grad()
def _evaluate(model: nn.Module, loader, device: torch.device, dtype: Optional[torch.dtype] = None,
              loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = None
              ) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for b, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, dtype):
            logits = model(x)
        loss = loss_fn(logits, y, b) if loss_fn is not None else F.cross_entropy(logits.float(), y)
        loss_sum += loss.double() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
        count += int(y.shape[0])
    model.train(was_training)
    if count == 0:
        return 0.0, float("nan")
    return 100.0 * correct.item() / count, loss_sum.item() / count  # the one sync of an evaluation


def evaluate(model: nn.Module, loader, device="cpu", amp: Optional[torch.dtype] = None) -> tuple[float, float]:
    """Top-1 accuracy in percent and mean cross-entropy of ``model`` over ``loader`` (eval mode)."""
    return _evaluate(model, loader, torch.device(device), amp)


# --------------------------------------------------------------------------------------------- #
# checkpoints
# --------------------------------------------------------------------------------------------- #

def _as_float(v, path, key) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() < 1:
            raise CheckpointError(f"{path}: key '{key}' is an empty tensor; expected an accuracy in percent")
        v = v.flatten()[0].item()
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    raise CheckpointError(f"{path}: key '{key}' = {v!r} is not a number; expected an accuracy in percent")


def checkpoint_accuracy(obj, path) -> float:
    """The best test accuracy (percent) stored in a checkpoint dict: key ``best_acc`` (ours and the
    authors' train_teacher.py, where it may be a 1-element tensor)."""
    if isinstance(obj, dict) and "best_acc" in obj:
        return _as_float(obj["best_acc"], path, "best_acc")
    raise CheckpointError(f"{path}: no 'best_acc' entry, so the teacher's test accuracy is unknown; "
                          f"re-train it with `main.py train-teacher` (which records it)")


def _check_identity(obj: dict, path, arch: Arch, num_classes: int) -> None:
    """Refuse a checkpoint whose recorded architecture or class count differs (one line, naming it)."""
    if "arch" in obj:
        try:
            got = Arch.from_dict(obj["arch"])
        except (KeyError, TypeError, ArchError):
            raise CheckpointError(f"{path}: its 'arch' entry is malformed; delete the file and re-train") from None
        if got != arch:
            raise CheckpointError(f"{path} holds architecture {got}, not {arch}; it belongs to another "
                                  f"student/space: use the matching config or delete it")
    if "num_classes" in obj and int(obj["num_classes"]) != int(num_classes):
        raise CheckpointError(f"{path} was trained for {int(obj['num_classes'])} classes but the task has "
                              f"{num_classes}; it belongs to another task: delete it or fix the task")


def load_model_checkpoint(path, arch: Arch, num_classes: int, strides: Sequence[int] = (1, 2, 2, 2),
                          allow_pickle: bool = False, device="cpu", what: str = "teacher checkpoint",
                          require_acc: bool = True) -> tuple[ResNet, Optional[float]]:
    """Build ``ResNet(arch)`` and load ``path`` strictly; return ``(model, best_acc_percent)``
    (``None`` for a file without ``best_acc`` when not ``require_acc``)."""
    obj = safe_torch_load(path, allow_pickle=allow_pickle, what=what)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a model checkpoint (expected a dict with key 'state_dict')")
    _check_identity(obj, path, arch, num_classes)
    acc = checkpoint_accuracy(obj, path) if require_acc or "best_acc" in obj else None
    model = ResNet(arch, num_classes, strides)
    load_state_dict_strict(model, extract_state_dict(obj, str(path)), str(path))
    return model.to(device), acc


def freeze(model: nn.Module) -> nn.Module:
    """Teacher in eval mode with gradients off (docs/method.md#kd: the teacher is frozen)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def arch_slug(arch: Arch) -> str:
    """A file-name-safe architecture string: stage width lists joined by ``_`` (``8-6_16_24-24_32``)."""
    return "_".join("-".join(str(w) for w in ws) for ws in arch.widths)


def kd_run_dir(cfg, task_name: str, arch: Arch, seed: int) -> Path:
    return Path(cfg.run.out_dir) / "kd" / task_name / arch_slug(arch) / f"seed{seed}"


# --------------------------------------------------------------------------------------------- #
# the loop
# --------------------------------------------------------------------------------------------- #

def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


class _Run:
    """Files of one run directory (only on rank 0; every method is a no-op without a directory)."""

    def __init__(self, out_dir: Optional[Path], write: bool):
        self.dir = Path(out_dir) if out_dir is not None else None
        self.write = write and self.dir is not None

    def path(self, name: str) -> Optional[Path]:
        return self.dir / name if self.dir is not None else None

    def log(self, record: dict) -> None:
        if self.write:
            append_jsonl(self.dir / METRICS, record)


def _identity(kind: str, task: str, seed: int, arch: Arch, num_classes: int, recipe: Recipe) -> dict:
    return {"kind": kind, "task": task, "seed": int(seed), "arch": arch.to_dict(), "num_classes": int(num_classes),
            "recipe": recipe.to_dict()}


def _check_resume(stored: dict, want: dict, path) -> None:
    """Refuse to resume a run written for another model, task or recipe."""
    _check_identity(stored, path, Arch.from_dict(want["arch"]), want["num_classes"])
    for key in ("kind", "task", "seed"):
        if key in stored and stored[key] != want[key]:
            raise CheckpointError(f"{path} belongs to a run with {key}={stored[key]!r}, not {want[key]!r}; use "
                                  f"another output directory or delete it")
    old = stored.get("recipe", {})
    for k, v in want["recipe"].items():
        if k in old and old[k] != v:
            sec = "teacher" if want["kind"] == "teacher" else "kd"
            raise CheckpointError(f"{path} was written with {sec}.{k}={old[k]!r} (now {v!r}); use another "
                                  f"output directory, restore the setting, or delete the run to start over")


def _fit(model: ResNet, recipe: Recipe, task: TaskData, cfg, device, seed: int, out_dir: Optional[Path],
         teacher: Optional[ResNet] = None, method: str = "kd", progress: bool = True,
         on_epoch_end: Optional[EpochCallback] = None, logit_cache: Optional[TeacherLogitCache] = None) -> dict:
    device = torch.device(device)
    rank, world, _ = dist_env()
    run = _Run(out_dir, write=rank == 0)
    ident = _identity(recipe.kind, task.name, seed, model.arch, model.num_classes, recipe)

    # A finished run returns its stored result (after checking it is the same run).
    if run.dir is not None and (run.dir / RESULT).is_file():
        stored = read_json(run.dir / RESULT, what="run result")
        _check_resume(stored, ident, run.dir / RESULT)
        return _finish_files(run, stored, cfg, method)

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    dtype = amp_dtype(cfg, device)
    channels_last = bool(cfg.train.channels_last)
    set_cudnn(cfg, device)
    torch.manual_seed(seed)

    raw = model.to(device)
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher = freeze(teacher.to(device))
        if channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)

    train_loader, test_loader = make_loaders(task, cfg, recipe.batch_size, seed, device, channels_last,
                                             recipe.heavy_aug)
    iters = len(train_loader)
    if iters == 0:
        raise ConfigError(f"task {task.name} has {len(task.train_labels)} training images, fewer than one batch of "
                          f"{recipe.batch_size}; lower {recipe.kind if recipe.kind == 'kd' else 'teacher'}.batch_size")
    optimizer = torch.optim.SGD(raw.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    # docs/method.md#kd: cosine decay stepped every iteration over the whole run.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * iters)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "last_acc": None, "last_loss": None,
             "train_loss": None, "seconds": 0.0}
    ckpt_path = run.path(CHECKPOINT)
    if ckpt_path is not None and ckpt_path.is_file():
        ck = safe_torch_load(ckpt_path, what="run checkpoint")
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise CheckpointError(f"{ckpt_path} is not a resumable dass checkpoint; delete it to start over")
        _check_resume(ck, ident, ckpt_path)
        sd = strip_module_prefix(ck["state_dict"])
        check_state_dict(raw, sd, str(ckpt_path))
        raw.load_state_dict(sd)
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and ck["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        state.update(ck["state"])
        if run.write:
            # Records of epochs after the checkpoint are re-done: drop them so the log stays consistent.
            truncate_jsonl(run.dir / METRICS, lambda r: r.get("epoch", 0) <= state["epoch"])
            run.log({"event": "resume", "epoch": state["epoch"]})
            _repair_best(run, ck, raw)
    elif run.write:
        truncate_jsonl(run.dir / METRICS, lambda r: r.get("epoch", 0) <= 0)
        save_config(cfg, run.dir, extra={"identity": {k: v for k, v in ident.items() if k != "recipe"},
                                         "method": method})
        run.log({"event": "start", "epoch": 0, **{k: v for k, v in ident.items() if k != "recipe"}})

    net: nn.Module = raw
    if world > 1:
        net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)
    eval_net = raw if world > 1 else net

    # Teacher logits shared by the students of a task (dass.train.logit_cache): not under DDP, where each rank
    # sees only its slice of a batch.
    stream: Optional[str] = None
    if teacher is not None and logit_cache is not None and world == 1:
        key = stream_key(teacher, task, cfg, recipe.batch_size, seed, device, dtype, channels_last)
        rows = iters * recipe.batch_size if train_loader.drop_last else len(task.train_labels)
        need = stream_bytes(recipe.epochs, rows, len(task.test_labels), task.num_classes)
        stream = key if logit_cache.admit(key, need, f"KD on {task.name}") else None

    def teacher_logits(x, epoch: int, b: int) -> torch.Tensor:
        t = logit_cache.get(stream, epoch, b) if stream is not None else None
        if t is None:
            with torch.no_grad(), _autocast(device, dtype):
                t = teacher(x)
            if stream is not None:
                logit_cache.put(stream, epoch, b, t)
        return t

    if teacher is not None:
        T, a = recipe.temperature, recipe.alpha

        def criterion(logits, x, y, epoch, b):
            return kd_loss(logits, teacher_logits(x, epoch, b), y, T, a)
    else:
        def criterion(logits, x, y, epoch, b):
            return label_smoothed_ce(logits, y, recipe.label_smoothing)

    t_cache: dict[int, torch.Tensor] = {}

    def test_loss(logits, y, b):
        if teacher is None:
            return F.cross_entropy(logits.float(), y)  # the authors' test criterion: plain CE
        return kd_loss(logits, t_cache[b], y, recipe.temperature, recipe.alpha)

    def run_eval() -> tuple[float, float]:
        if teacher is not None and not t_cache:
            # The frozen teacher's test logits never change: compute them once per run (epoch 0 of the
            # shared cache: once per task).
            for b, (x, _) in enumerate(test_loader):
                t_cache[b] = teacher_logits(x.to(device), 0, b).float()
        return _evaluate(eval_net, test_loader, device, dtype, test_loss)

    bar = None
    if _progress_enabled(progress) and rank == 0:
        bar = tqdm(total=recipe.epochs * iters, initial=state["epoch"] * iters, leave=False, dynamic_ncols=True,
                   desc=f"{recipe.kind} {task.name} {model.arch}")

    for epoch in range(state["epoch"] + 1, recipe.epochs + 1):
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        count = 0
        for b, (x, y) in enumerate(train_loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if world > 1:  # DDP: every rank drew the same global batch; train on this rank's slice
                x, y = x[rank::world], y[rank::world]
            with _autocast(device, dtype):
                logits = net(x)
            loss = criterion(logits, x, y, epoch, b)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            count += int(y.shape[0])
            if bar is not None:
                bar.update(1)
        totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(count), dtype=torch.float64,
                                                                         device=device)])
        if world > 1:
            dist.all_reduce(totals)
        totals = totals.tolist()  # one sync per epoch
        rec = {"event": "epoch", "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": totals[0] / max(totals[2], 1), "train_acc": 100.0 * totals[1] / max(totals[2], 1)}
        state["train_loss"] = rec["train_loss"]
        evaluated = epoch % recipe.eval_every == 0 or epoch == recipe.epochs
        is_best = False
        if evaluated and rank == 0:
            acc, tloss = run_eval()
            is_best = acc > state["best_acc"]
            if is_best:
                state["best_acc"], state["best_epoch"] = acc, epoch
            state["last_acc"], state["last_loss"] = acc, tloss
            rec.update(test_acc=acc, test_loss=tloss, best_acc=state["best_acc"])
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - t0
        rec["epoch_time"] = time.perf_counter() - t0
        run.log(rec)
        if bar is not None:
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", **({"acc": f"{rec['test_acc']:.2f}"}
                                                                  if "test_acc" in rec else {}))
        elif progress and rank == 0 and evaluated:  # not a terminal (nohup, CI): one line per evaluation
            print(f"[{recipe.kind} {task.name}] epoch {epoch}/{recipe.epochs} train loss {rec['train_loss']:.4f} "
                  f"test acc {rec['test_acc']:.2f} (best {state['best_acc']:.2f})", file=sys.stderr, flush=True)
        if run.write and (evaluated or epoch % cfg.train.checkpoint_every == 0 or epoch == recipe.epochs):
            # Checkpoint first, then model_best: a kill between the two is repaired on resume.
            ck = {"format": FORMAT, **ident, "epoch": epoch, "state": dict(state),
                  "best_acc": state["best_acc"], "state_dict": raw.state_dict(),
                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  "scaler": scaler.state_dict() if scaler is not None else None,
                  "rng": {"torch": torch.get_rng_state(),
                          "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}}
            atomic_torch_save(ck, run.dir / CHECKPOINT)
            if is_best:
                _save_best(run, ident, raw, state)
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)
    if bar is not None:
        bar.close()

    result = {**ident, "method": method, "final_acc": state["last_acc"], "best_acc": state["best_acc"],
              "final_loss": state["last_loss"], "train_loss": state["train_loss"], "best_epoch": state["best_epoch"],
              "epochs": recipe.epochs, "seconds": round(state["seconds"], 3),
              "checkpoint": str(run.dir / BEST) if run.dir is not None else None,
              "run_dir": str(run.dir) if run.dir is not None else None}
    if world > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return _finish_files(run, result, cfg, method)


def _save_best(run: _Run, ident: dict, raw: nn.Module, state: dict) -> None:
    best = {"state_dict": raw.state_dict(), "best_acc": state["best_acc"], "epoch": state["best_epoch"],
            "arch": ident["arch"], "num_classes": ident["num_classes"], "kind": ident["kind"],
            "task": ident["task"], "seed": ident["seed"]}
    atomic_torch_save(best, run.dir / BEST)


def _repair_best(run: _Run, ck: dict, raw: nn.Module) -> None:
    """After a kill between writing the checkpoint and model_best, the checkpoint's weights are the
    best ones (model_best is only written at the epoch of a checkpoint): write model_best again."""
    st = ck["state"]
    if st["best_epoch"] != ck["epoch"] or st["best_epoch"] == 0:
        return
    p = run.dir / BEST
    try:
        cur = safe_torch_load(p, what="model_best") if p.is_file() else None
    except CheckpointError:
        cur = None
    if not isinstance(cur, dict) or cur.get("epoch") != st["best_epoch"]:
        ident = {k: ck[k] for k in ("arch", "num_classes", "kind", "task", "seed")}
        _save_best(run, ident, raw, st)


def _finish_files(run: _Run, result: dict, cfg, method: str) -> dict:
    """Write result.json and the result.csv row once per (run, method); return the public result."""
    if run.write:
        rows = list(result.get("csv_methods", []))
        if method not in rows:
            write_json(run.dir / RESULT, {**result, "csv_methods": rows})
            arch = Arch.from_dict(result["arch"])
            append_csv_row(Path(cfg.run.out_dir) / RESULT_CSV, {
                "data": result["task"], "proxy": method, "seed": result["seed"],
                "best acc": round(result["best_acc"], 3), "final acc": round(result["final_acc"], 3),
                "final loss": round(result["final_loss"], 5), "epochs": result["epochs"], "kind": result["kind"],
                "arch": str(arch), "run_dir": result["run_dir"]})
            rows.append(method)
            result = {**result, "csv_methods": rows}
            write_json(run.dir / RESULT, result)
    out = {k: result[k] for k in ("final_acc", "best_acc", "final_loss", "epochs", "checkpoint", "train_loss",
                                  "best_epoch", "seconds", "run_dir")}
    return out


# --------------------------------------------------------------------------------------------- #
# public entry points
# --------------------------------------------------------------------------------------------- #

def train_teacher(task: TaskData, cfg, arch: Optional[Arch] = None, out_dir=None, device="cpu",
                  meta_test: bool = False, progress: bool = True,
                  on_epoch_end: Optional[EpochCallback] = None) -> dict:
    """Train a task's teacher (docs/method.md#teachers) into ``out_dir`` (default :func:`dass.train.teachers.teacher_dir`);
    resumes. A directory holding a released teacher is refused (:func:`dass.train.teachers.check_not_released`).

    Returns ``final_acc``, ``best_acc``, ``final_loss``, ``epochs``, ``checkpoint`` (model_best path).
    """
    space = SearchSpace.from_config(cfg)
    arch = space.validate(arch) if arch is not None else space.teacher()
    from .teachers import check_not_released, teacher_dir

    out_dir = Path(out_dir) if out_dir is not None else teacher_dir(cfg, task.name)
    check_not_released(out_dir)
    seed = cfg.teacher.seed
    torch.manual_seed(seed)  # the teacher's initialisation
    model = ResNet(arch, task.num_classes, space.stage_strides)
    return _fit(model, Recipe.teacher(cfg, meta_test), task, cfg, device, seed, out_dir, teacher=None,
                method="teacher", progress=progress, on_epoch_end=on_epoch_end)


def distill(teacher: ResNet, student: ResNet, task: TaskData, cfg, seed: int, device="cpu", out_dir=None,
            progress: bool = True, method: str = "kd", on_epoch_end: Optional[EpochCallback] = None,
            logit_cache: Optional[TeacherLogitCache] = None) -> dict:
    """KD of an (already remapped) ``student`` from a frozen ``teacher`` (docs/method.md#kd).

    ``out_dir=None``: a lean in-memory run (no files), as the database builder needs for hundreds of
    students. With ``out_dir``: the run directory described in the module docstring, resumable.
    ``student`` is trained in place. ``logit_cache``: a :class:`dass.train.logit_cache.TeacherLogitCache`
    shared by the KD runs of one teacher and task with the same seed; all but the first skip the
    teacher's forward passes (bit-identical results).
    """
    if teacher.num_classes != student.num_classes or teacher.num_classes != task.num_classes:
        raise ArchError(f"teacher ({teacher.num_classes} classes), student ({student.num_classes}) and task "
                        f"{task.name} ({task.num_classes}) must have the same class count")
    return _fit(student, Recipe.kd(cfg), task, cfg, device, seed, Path(out_dir) if out_dir is not None else None,
                teacher=teacher, method=method, progress=progress, on_epoch_end=on_epoch_end, logit_cache=logit_cache)


def kd_student(teacher: ResNet, arch: Arch, task: TaskData, cfg, seed: int, device="cpu", out_dir=None,
               progress: bool = True, method: str = "kd", on_epoch_end: Optional[EpochCallback] = None,
               logit_cache: Optional[TeacherLogitCache] = None) -> dict:
    """Build the student ``arch``, remap it from ``teacher`` (``kd.remap``, docs/method.md#remap), then :func:`distill`."""
    SearchSpace.from_config(cfg).validate(arch)
    torch.manual_seed(seed)  # only the "random" strategy draws: its init follows the seed
    teacher = teacher.to(device)
    student = remapped_student(teacher, arch, cfg.kd.remap)
    return distill(teacher, student, task, cfg, seed, device, out_dir, progress, method, on_epoch_end, logit_cache)


def kd_seeds(teacher: ResNet, arch: Arch, task: TaskData, cfg, device="cpu", seeds: Optional[Sequence[int]] = None,
             method: str = "kd", progress: bool = True) -> dict:
    """KD of one student once per seed (``kd.seeds``; docs/method.md#kd: seeds 1, 2, 3), each in its run dir
    ``<run.out_dir>/kd/<task>/<arch>/seed<k>/``; writes and returns the mean +- std summary
    (sample std, :func:`dass.metrics.mean_std`) in ``<run.out_dir>/kd/<task>/<arch>/summary.json``."""
    seeds = [int(s) for s in (seeds if seeds is not None else cfg.kd.seeds)]
    if not seeds:
        raise ConfigError("config key 'kd.seeds' is empty; give at least one seed")
    runs = []
    for s in seeds:
        r = kd_student(teacher, arch, task, cfg, s, device, kd_run_dir(cfg, task.name, arch, s), progress, method)
        runs.append({"seed": s, **{k: r[k] for k in ("best_acc", "final_acc", "final_loss", "run_dir")}})
    summary = {"task": task.name, "method": method, "arch": arch.to_dict(), "arch_str": str(arch), "seeds": seeds,
               "std": "sample (ddof=1)"}
    for key in ("best_acc", "final_acc"):
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std([r[key] for r in runs])
    summary["runs"] = runs
    if dist_env()[0] == 0:
        write_json(kd_run_dir(cfg, task.name, arch, seeds[0]).parent / "summary.json", summary)
    return summary
