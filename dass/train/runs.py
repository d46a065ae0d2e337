"""The files of one training run: its directory, identity, resume checks, checkpoints and results.

Also where a task's teacher lives and what state its folder is in (:func:`teacher_dir`, :func:`dir_status`),
since a teacher is a training run of ours or a released file.

Layout of a run directory (docs/method.md#file-formats): ``config.yaml``, ``metrics.jsonl``
(append-only), ``checkpoint.pth.tar`` (everything needed to resume), ``model_best.pth.tar``,
``result.json``, and one row per run and method in ``<run.out_dir>/result.csv``. Every write is
atomic; only rank 0 writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..config import save_config
from ..errors import CheckpointError
from ..io import append_csv_row, append_jsonl, atomic_torch_save, safe_torch_load, truncate_jsonl, write_json
from ..nets import check_state_dict, strip_module_prefix
from ..space import Arch
from .checkpoints import check_identity
from .recipe import Recipe

CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
METRICS = "metrics.jsonl"
RESULT = "result.json"
RESULT_CSV = "result.csv"
FORMAT = "dass-train-1"


def teacher_dir(cfg, task: str) -> Path:
    """``<run.checkpoint_dir>/teacher/<task>/``."""
    return Path(cfg.run.checkpoint_dir) / "teacher" / task


def dir_status(d: str | os.PathLike) -> str:
    """``missing``, ``incomplete``, ``trained`` or ``released`` for a teacher directory (their meaning:
    :mod:`dass.train.teachers`)."""
    d = Path(d)
    ours = (d / CHECKPOINT).is_file() or (d / RESULT).is_file()
    if not (d / BEST).is_file():
        return "incomplete" if ours else "missing"
    if not ours:
        return "released"
    return "trained" if (d / RESULT).is_file() else "incomplete"


def check_not_released(out_dir: str | os.PathLike) -> None:
    """Refuse to train into a directory holding a released teacher (docs/method.md#teachers)."""
    if dir_status(out_dir) == "released":
        raise CheckpointError(f"{Path(out_dir) / BEST} is a released teacher (no run files of ours): it is used as "
                              f"is and never retrained or overwritten; to train your own, point "
                              f"run.checkpoint_dir elsewhere")


def arch_slug(arch: Arch) -> str:
    """A file-name-safe architecture string: stage width lists joined by ``_`` (``8-6_16_24-24_32``)."""
    return "_".join("-".join(str(w) for w in ws) for ws in arch.widths)


def kd_run_dir(cfg, task_name: str, arch: Arch, seed: int) -> Path:
    return Path(cfg.run.out_dir) / "kd" / task_name / arch_slug(arch) / f"seed{seed}"


def progress_enabled(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


class Run:
    """Files of one run directory (only on rank 0; every method is a no-op without a directory)."""

    def __init__(self, out_dir: Optional[Path], write: bool):
        self.dir = Path(out_dir) if out_dir is not None else None
        self.write = write and self.dir is not None

    def path(self, name: str) -> Optional[Path]:
        return self.dir / name if self.dir is not None else None

    def log(self, record: dict) -> None:
        if self.write:
            append_jsonl(self.dir / METRICS, record)


def identity(kind: str, task: str, seed: int, arch: Arch, num_classes: int, recipe: Recipe) -> dict:
    return {"kind": kind, "task": task, "seed": int(seed), "arch": arch.to_dict(), "num_classes": int(num_classes),
            "recipe": recipe.to_dict()}


def check_resume(stored: dict, want: dict, path) -> None:
    """Refuse to resume a run written for another model, task or recipe."""
    check_identity(stored, path, Arch.from_dict(want["arch"]), want["num_classes"])
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


def save_best(run: Run, ident: dict, raw: nn.Module, state: dict) -> None:
    best = {"state_dict": raw.state_dict(), "best_acc": state["best_acc"], "epoch": state["best_epoch"],
            "arch": ident["arch"], "num_classes": ident["num_classes"], "kind": ident["kind"],
            "task": ident["task"], "seed": ident["seed"]}
    atomic_torch_save(best, run.dir / BEST)


def repair_best(run: Run, ck: dict, raw: nn.Module) -> None:
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
        save_best(run, ident, raw, st)


def finish_files(run: Run, result: dict, cfg, method: str) -> dict:
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


def start_files(run: Run, cfg, ident: dict, method: str) -> None:
    """A fresh run: drop stale records, save the config that runs, log the start."""
    if run.write:
        truncate_jsonl(run.dir / METRICS, lambda r: r.get("epoch", 0) <= 0)
        save_config(cfg, run.dir, extra={"identity": {k: v for k, v in ident.items() if k != "recipe"},
                                         "method": method})
        run.log({"event": "start", "epoch": 0, **{k: v for k, v in ident.items() if k != "recipe"}})


def restore(run: Run, ident: dict, raw: nn.Module, optimizer, scheduler, scaler, state: dict,
            device: torch.device) -> None:
    """Resume from the run's checkpoint (an epoch boundary): weights, optimizer, scheduler, scaler, RNG
    and the loop's state, after checking it is the same run."""
    path = run.path(CHECKPOINT)
    ck = safe_torch_load(path, what="run checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resumable dass checkpoint; delete it to start over")
    check_resume(ck, ident, path)
    sd = strip_module_prefix(ck["state_dict"])
    check_state_dict(raw, sd, str(path))
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
        repair_best(run, ck, raw)


def save_checkpoint(run: Run, ident: dict, epoch: int, state: dict, raw: nn.Module, optimizer, scheduler,
                    scaler, device: torch.device, is_best: bool) -> None:
    """Checkpoint first, then model_best: a kill between the two is repaired on resume."""
    ck = {"format": FORMAT, **ident, "epoch": epoch, "state": dict(state),
          "best_acc": state["best_acc"], "state_dict": raw.state_dict(),
          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
          "scaler": scaler.state_dict() if scaler is not None else None,
          "rng": {"torch": torch.get_rng_state(),
                  "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}}
    atomic_torch_save(ck, run.dir / CHECKPOINT)
    if is_best:
        save_best(run, ident, raw, state)
