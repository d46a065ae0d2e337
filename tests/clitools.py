"""Helpers shared by the reliability, bad-input and determinism tests (not a test module).

Everything here drives the real command line (``python main.py ...``) on tiny seeded fixtures:
a few 8x8 toy tasks in the authors' numpy layout and a YAML config of a 4-stage space small
enough that a teacher, a KD run or a database build takes seconds on one CPU thread.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"

# One thread everywhere: CPU results are bit-identical across processes only at a fixed thread count,
# and the test machine is shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("DASS_MIRROR", None)


def write_task(root: Path, name: str, num_classes: int, n_train: int, n_test: int, seed: int,
               size: int = 8, meta: Optional[dict] = None) -> Path:
    """A learnable toy task (class-dependent colour + noise) in the ``<name>/{split}_{images,labels}.npy`` layout."""
    from dass.testing import write_toy_task

    return write_toy_task(root, name, num_classes, n_train, n_test, seed, size, 30, meta)


def write_toy_tasks(root: Path, n_train: int, n_test: int) -> Path:
    """toy-0, toy-1, toy-2 (3, 4 and 3 classes): one task per split of :func:`tiny_config`'s config."""
    for k, nc in enumerate((3, 4, 3)):
        write_task(root, f"toy-{k}", nc, n_train, n_test, k)
    return root


def tiny_config(tmp: Path, data_root: Path, **sections) -> dict:
    """The tiny configuration as a dict (sections are merged over the defaults given here)."""
    tmp = Path(tmp)
    cfg = {
        # the fixture keeps the last block free and the settings below fixed, whatever the built-in defaults
        "space": {"stage_widths": [4, 8, 8, 16], "max_depth": 2, "width_multipliers": [0.5, 1.0],
                  "image_size": 8, "last_block_full_width": False},
        "data": {"root": str(data_root), "crop_padding": 1, "test_drop_last": False},
        "tasks": {"meta_train": ["toy-0"], "meta_valid": ["toy-1"], "meta_test": ["toy-2"]},
        "teacher": {"epochs": 1, "batch_size": 16, "eval_every": 1},
        "kd": {"epochs": 1, "batch_size": 16, "eval_every": 1},
        "train": {"num_threads": 1},
        "db": {"out": str(tmp / "db"), "num_students": 3, "num_students_meta_test": 0, "num_candidates": 4},
        "predictor": {"dataset_samples_per_class": 2, "dataset_feature_dim": 8},
        "meta": {"out": str(tmp / "meta"), "n_query": 2, "seed": 0},
        "search": {"out": str(tmp / "search"), "inner_lr": "learned"},
        "run": {"device": "cpu", "checkpoint_dir": str(tmp / "ckpt"), "out_dir": str(tmp / "runs")},
    }
    for sec, vals in sections.items():
        cfg.setdefault(sec, {}).update(vals)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main_cmd(*args: str) -> list[str]:
    return [sys.executable, str(MAIN), *args]


def run_main(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``main.py ARGS`` in a child process (what a kill, a signal or an exit status needs)."""
    return subprocess.run(main_cmd(*args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``main.py ARGS`` in this process (no interpreter start-up, no torch import per call); the same exit
    status ``main.py`` would exit with, and its stdout and stderr."""
    import contextlib
    import io

    import torch

    from dass.cli import main

    out, err, here, threads = io.StringIO(), io.StringIO(), os.getcwd(), torch.get_num_threads()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(args))
            except SystemExit as e:   # argparse's usage errors
                rc = e.code
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)   # commands set their configured thread count
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


class Background:
    """``python main.py ...`` started now and awaited later (the reference run overlaps the killed one:
    most of a tiny run is interpreter start-up, which a second core absorbs)."""

    def __init__(self, *args: str, cwd: Path):
        self.cmd = main_cmd(*args)
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def wait(self, timeout: float = 180) -> subprocess.CompletedProcess:
        out, err = self.proc.communicate(timeout=timeout)
        r = subprocess.CompletedProcess(self.cmd, self.proc.returncode, out, err)
        assert r.returncode == 0, f"{' '.join(self.cmd)} exited {r.returncode}:\n{err[-3000:]}"
        return r


def files_under(root: Path) -> set[str]:
    """Every file below ``root`` (relative paths), for "nothing was written" checks."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def is_temp(path: Path) -> bool:
    """A temporary file of dass.io's atomic writer (``.<name>.<random>.tmp``) or a download ``.part``."""
    name = Path(path).name
    return (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".part")


def check_complete_files(root: Path, allow_torn_jsonl: bool = False) -> list[Path]:
    """Assert every non-temporary file under ``root`` is whole (parses); return the temp files found.

    ``.pt``/``.tar`` load with ``weights_only``, ``.json``/``.yaml`` parse, ``.jsonl`` lines parse
    (the last line may be torn right after a kill when ``allow_torn_jsonl``: the reader drops it and
    the resumed run truncates it away), ``.npy`` load.
    """
    import json

    import torch

    temps = []
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file():
            continue
        if is_temp(p):
            temps.append(p)
            continue
        if p.suffix in (".pt", ".tar", ".pth"):
            torch.load(p, map_location="cpu", weights_only=True)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix in (".yaml", ".yml"):
            yaml.safe_load(p.read_text())
        elif p.suffix == ".jsonl":
            lines = [ln for ln in p.read_text().split("\n")]
            body = lines[:-1] if lines and lines[-1] == "" else lines
            for i, ln in enumerate(body):
                try:
                    json.loads(ln)
                except json.JSONDecodeError:
                    assert allow_torn_jsonl and i == len(body) - 1, f"{p} line {i + 1} is half-written"
        elif p.suffix == ".npy":
            np.load(p, allow_pickle=False)
    return temps


def kill_when(cmd: Sequence[str], cwd: Path, ready: Callable[[], bool], delay: float, timeout: float = 120,
              poll: float = 0.005) -> tuple[int, bool]:
    """Start ``cmd``; once ``ready()`` holds, wait ``delay`` seconds and SIGKILL it.

    Returns ``(returncode, killed)``; ``killed`` is False when the process ended on its own first.
    """
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    t_end = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                return proc.returncode, False if proc.returncode == 0 else _fail(cmd, proc.returncode, err)
            if time.monotonic() > t_end:
                raise TimeoutError(f"{cmd} never reached the kill point")
            time.sleep(poll)
        if delay > 0:
            time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.kill()  # SIGKILL: no handler, no cleanup, like an OOM kill or a pulled plug
        rc = proc.wait(timeout=30)
        return rc, not finished
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _fail(cmd, rc, err):
    raise AssertionError(f"{' '.join(map(str, cmd))} exited {rc} before the kill point:\n{err[-3000:]}")
