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

Run directories (when ``out_dir`` is given; :mod:`dass.train.runs`): ``config.yaml`` (resolved config + git revision),
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

import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..data.tasks import TaskData, make_loader
from ..errors import ArchError, ConfigError
from ..io import read_json, write_json
from ..metrics import mean_std
from ..nets import ResNet
from ..remap import remapped_student
from ..space import Arch, SearchSpace
from .checkpoints import freeze
from .logit_cache import TeacherLogitCache, stream_bytes, stream_key
from .losses import kd_loss, label_smoothed_ce
from .recipe import Recipe, amp_dtype, autocast, dist_env, set_cudnn
from .runs import (BEST, CHECKPOINT, RESULT, Run, check_not_released, check_resume, finish_files, identity, kd_run_dir,
                   progress_enabled, restore, save_checkpoint, start_files, teacher_dir)

EpochCallback = Callable[[int, dict], None]


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
        with autocast(device, dtype):
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
# the loop
# --------------------------------------------------------------------------------------------- #

class _Criterion:
    """A run's training and test criteria: label-smoothed CE for a teacher; for a student the KD loss
    against the frozen teacher, whose logits may come from a cache shared by the task's students."""

    def __init__(self, recipe: Recipe, teacher: Optional[nn.Module], device: torch.device,
                 dtype: Optional[torch.dtype], cache: Optional[TeacherLogitCache], stream: Optional[str]):
        self.recipe, self.teacher, self.device, self.dtype = recipe, teacher, device, dtype
        self.cache, self.stream = cache, stream
        self.test_logits: dict[int, torch.Tensor] = {}

    def teacher_logits(self, x, epoch: int, b: int) -> torch.Tensor:
        t = self.cache.get(self.stream, epoch, b) if self.stream is not None else None
        if t is None:
            with torch.no_grad(), autocast(self.device, self.dtype):
                t = self.teacher(x)
            if self.stream is not None:
                self.cache.put(self.stream, epoch, b, t)
        return t

    def train(self, logits, x, y, epoch: int, b: int) -> torch.Tensor:
        if self.teacher is None:
            return label_smoothed_ce(logits, y, self.recipe.label_smoothing)
        return kd_loss(logits, self.teacher_logits(x, epoch, b), y, self.recipe.temperature, self.recipe.alpha)

    def test(self, logits, y, b: int) -> torch.Tensor:
        if self.teacher is None:
            return F.cross_entropy(logits.float(), y)  # the authors' test criterion: plain CE
        return kd_loss(logits, self.test_logits[b], y, self.recipe.temperature, self.recipe.alpha)

    def evaluate(self, net: nn.Module, test_loader) -> tuple[float, float]:
        if self.teacher is not None and not self.test_logits:
            # The frozen teacher's test logits never change: compute them once per run (epoch 0 of the
            # shared cache: once per task).
            for b, (x, _) in enumerate(test_loader):
                self.test_logits[b] = self.teacher_logits(x.to(self.device), 0, b).float()
        return _evaluate(net, test_loader, self.device, self.dtype, self.test)


def _logit_stream(teacher, cache, task: TaskData, cfg, recipe: Recipe, seed: int, device, dtype, channels_last: bool,
                  train_loader, world: int) -> Optional[str]:
    """The cache stream of this KD run's teacher logits (dass.train.logit_cache), if the cache admits it;
    never under DDP, where each rank sees only its slice of a batch."""
    if teacher is None or cache is None or world != 1:
        return None
    key = stream_key(teacher, task, cfg, recipe.batch_size, seed, device, dtype, channels_last)
    iters = len(train_loader)
    rows = iters * recipe.batch_size if train_loader.drop_last else len(task.train_labels)
    need = stream_bytes(recipe.epochs, rows, len(task.test_labels), task.num_classes)
    return key if cache.admit(key, need, f"KD on {task.name}") else None


def _optimiser(raw: nn.Module, recipe: Recipe, iters: int, dtype):
    """SGD with a cosine decay stepped every iteration over the whole run (docs/method.md#kd)."""
    optimizer = torch.optim.SGD(raw.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * iters)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return optimizer, scheduler, scaler


def _train_epoch(net, loader, crit: _Criterion, optimizer, scheduler, scaler, device, dtype, epoch: int,
                 rank: int, world: int, bar) -> dict:
    """One epoch of SGD; the epoch's record with its mean train loss and accuracy (one sync per epoch)."""
    loader.set_epoch(epoch)
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for b, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if world > 1:  # DDP: every rank drew the same global batch; train on this rank's slice
            x, y = x[rank::world], y[rank::world]
        with autocast(device, dtype):
            logits = net(x)
        loss = crit.train(logits, x, y, epoch, b)
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
    totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(count), dtype=torch.float64, device=device)])
    if world > 1:
        dist.all_reduce(totals)
    totals = totals.tolist()
    return {"event": "epoch", "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
            "train_loss": totals[0] / max(totals[2], 1), "train_acc": 100.0 * totals[1] / max(totals[2], 1)}


def _show(bar, progress: bool, rank: int, evaluated: bool, rec: dict, recipe: Recipe, task: TaskData,
          state: dict) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{rec['train_loss']:.3f}", **({"acc": f"{rec['test_acc']:.2f}"}
                                                              if "test_acc" in rec else {}))
    elif progress and rank == 0 and evaluated:  # not a terminal (nohup, CI): one line per evaluation
        print(f"[{recipe.kind} {task.name}] epoch {rec['epoch']}/{recipe.epochs} train loss {rec['train_loss']:.4f} "
              f"test acc {rec['test_acc']:.2f} (best {state['best_acc']:.2f})", file=sys.stderr, flush=True)


def _to_device(model: nn.Module, teacher: Optional[nn.Module], device, channels_last: bool):
    raw = model.to(device)
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher = freeze(teacher.to(device))
        if channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
    return raw, teacher


def _fit(model: ResNet, recipe: Recipe, task: TaskData, cfg, device, seed: int, out_dir: Optional[Path],
         teacher: Optional[ResNet] = None, method: str = "kd", progress: bool = True,
         on_epoch_end: Optional[EpochCallback] = None, logit_cache: Optional[TeacherLogitCache] = None) -> dict:
    device = torch.device(device)
    rank, world, _ = dist_env()
    run = Run(out_dir, write=rank == 0)
    ident = identity(recipe.kind, task.name, seed, model.arch, model.num_classes, recipe)
    if run.dir is not None and (run.dir / RESULT).is_file():   # finished: its stored result, if the same run
        stored = read_json(run.dir / RESULT, what="run result")
        check_resume(stored, ident, run.dir / RESULT)
        return finish_files(run, stored, cfg, method)

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    dtype, channels_last = amp_dtype(cfg, device), bool(cfg.train.channels_last)
    set_cudnn(cfg, device)
    torch.manual_seed(seed)
    raw, teacher = _to_device(model, teacher, device, channels_last)
    train_loader, test_loader = make_loaders(task, cfg, recipe.batch_size, seed, device, channels_last,
                                             recipe.heavy_aug)
    iters = len(train_loader)
    if iters == 0:
        raise ConfigError(f"task {task.name} has {len(task.train_labels)} training images, fewer than one batch of "
                          f"{recipe.batch_size}; lower {recipe.kind if recipe.kind == 'kd' else 'teacher'}.batch_size")
    optimizer, scheduler, scaler = _optimiser(raw, recipe, iters, dtype)
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "last_acc": None, "last_loss": None,
             "train_loss": None, "seconds": 0.0}
    if run.dir is not None and run.path(CHECKPOINT).is_file():
        restore(run, ident, raw, optimizer, scheduler, scaler, state, device)
    else:
        start_files(run, cfg, ident, method)

    net: nn.Module = raw
    if world > 1:
        net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)
    eval_net = raw if world > 1 else net
    stream = _logit_stream(teacher, logit_cache, task, cfg, recipe, seed, device, dtype, channels_last,
                           train_loader, world)
    crit = _Criterion(recipe, teacher, device, dtype, logit_cache, stream)
    bar = None
    if progress_enabled(progress) and rank == 0:
        bar = tqdm(total=recipe.epochs * iters, initial=state["epoch"] * iters, leave=False, dynamic_ncols=True,
                   desc=f"{recipe.kind} {task.name} {model.arch}")

    for epoch in range(state["epoch"] + 1, recipe.epochs + 1):
        t0 = time.perf_counter()
        rec = _train_epoch(net, train_loader, crit, optimizer, scheduler, scaler, device, dtype, epoch, rank, world,
                           bar)
        state["train_loss"] = rec["train_loss"]
        evaluated = epoch % recipe.eval_every == 0 or epoch == recipe.epochs
        is_best = False
        if evaluated and rank == 0:
            acc, tloss = crit.evaluate(eval_net, test_loader)
            is_best = acc > state["best_acc"]
            if is_best:
                state["best_acc"], state["best_epoch"] = acc, epoch
            state["last_acc"], state["last_loss"] = acc, tloss
            rec.update(test_acc=acc, test_loss=tloss, best_acc=state["best_acc"])
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - t0
        rec["epoch_time"] = time.perf_counter() - t0
        run.log(rec)
        _show(bar, progress, rank, evaluated, rec, recipe, task, state)
        if run.write and (evaluated or epoch % cfg.train.checkpoint_every == 0 or epoch == recipe.epochs):
            save_checkpoint(run, ident, epoch, state, raw, optimizer, scheduler, scaler, device, is_best)
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)
    if bar is not None:
        bar.close()
    return _result(run, ident, state, recipe, cfg, method, world)


def _result(run: Run, ident: dict, state: dict, recipe: Recipe, cfg, method: str, world: int) -> dict:
    result = {**ident, "method": method, "final_acc": state["last_acc"], "best_acc": state["best_acc"],
              "final_loss": state["last_loss"], "train_loss": state["train_loss"], "best_epoch": state["best_epoch"],
              "epochs": recipe.epochs, "seconds": round(state["seconds"], 3),
              "checkpoint": str(run.dir / BEST) if run.dir is not None else None,
              "run_dir": str(run.dir) if run.dir is not None else None}
    if world > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return finish_files(run, result, cfg, method)


# --------------------------------------------------------------------------------------------- #
# public entry points
# --------------------------------------------------------------------------------------------- #

def train_teacher(task: TaskData, cfg, arch: Optional[Arch] = None, out_dir=None, device="cpu",
                  meta_test: bool = False, progress: bool = True,
                  on_epoch_end: Optional[EpochCallback] = None) -> dict:
    """Train a task's teacher (docs/method.md#teachers) into ``out_dir`` (default :func:`dass.train.runs.teacher_dir`);
    resumes. A directory holding a released teacher is refused (:func:`dass.train.runs.check_not_released`).

    Returns ``final_acc``, ``best_acc``, ``final_loss``, ``epochs``, ``checkpoint`` (model_best path).
    """
    space = SearchSpace.from_config(cfg)
    arch = space.validate(arch) if arch is not None else space.teacher()
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
