#!/usr/bin/env python
"""KD of one student on a CPU: one process with N threads vs N single-threaded DDP processes (torchrun).

Same setup as ``bench/bench_kd.py`` (paper scale: 64x64, 40 classes, ResNet42 teacher, the 3-3-3-3 x0.75
student, batch 64, random images), three sides alternated ``--repeats`` times: the authors'-style
reference loop (``bench_kd.reference_epochs``); ``dass.train.engine.distill`` in this process with ``--procs``
threads; the same call under ``torchrun --standalone --nproc_per_node PROCS`` with one thread per
process: the engine's DDP path (gloo on CPU), where every rank draws the same global batch and trains on
its ``rank::world`` slice, so the optimisation is the one-process run's. Every side runs 1 warm-up and
``--epochs`` timed epochs; figures are medians over epochs. Why: on 2 cores two threads speed a KD step
up by only 1.6-1.8x (bench/RESULTS.md section 1), so separate processes may use the cores better.

    python bench/bench_kd_ddp.py --quick      # 32 px, batch 16, 2 steps per epoch
    python bench/bench_kd_ddp.py              # paper scale, 3 steps per epoch, 2 timed epochs
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import Reporter, base_parser, median, print_header, spread

import torch  # noqa: E402

from bench_kd import engine_epochs, mid_student, random_images, reference_epochs  # noqa: E402
from dass.nets import ResNet  # noqa: E402
from dass.remap import remapped_student  # noqa: E402
from dass.space import SearchSpace  # noqa: E402
from dass.train.checkpoints import freeze  # noqa: E402

CLASSES = 40


def _setup(size: int, batch: int, steps: int):
    space = SearchSpace(image_size=size)
    images, labels = random_images(steps * batch, size, CLASSES)
    torch.manual_seed(0)
    teacher = freeze(ResNet(space.teacher(), CLASSES, space.stage_strides))
    student = remapped_student(teacher, mid_student(space), "copy_paste_first")
    return teacher, student, images, labels


def run_engine(size: int, batch: int, steps: int, epochs: int, padding: int) -> list[float]:
    teacher, student, images, labels = _setup(size, batch, steps)
    return engine_epochs(teacher, student, images, labels, batch=batch, size=size, padding=padding,
                         epochs=epochs + 1, device=torch.device("cpu"))


def run_reference(size: int, batch: int, steps: int, epochs: int, padding: int) -> list[float]:
    teacher, student, images, labels = _setup(size, batch, steps)
    return reference_epochs(teacher, student, images, labels, batch=batch, size=size, padding=padding,
                            epochs=epochs + 1, device=torch.device("cpu"))


def run_ddp(args) -> list[float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.procs}",
           str(Path(__file__).resolve()), "--worker", "--size", str(args.size), "--batch", str(args.batch),
           "--steps", str(args.steps), "--epochs", str(args.epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("EPOCH_TIMES ")]
    if r.returncode != 0 or not lines:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"torchrun side failed (exit {r.returncode})")
    return json.loads(lines[-1].split(" ", 1)[1])


def worker(args) -> None:
    """One torchrun rank: gloo process group, one thread, the engine; rank 0 prints the epoch times."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    times = run_engine(args.size, args.batch, args.steps, args.epochs, args.padding)
    if dist.get_rank() == 0:
        print("EPOCH_TIMES " + json.dumps(times), flush=True)
    dist.destroy_process_group()


def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, default=2, help="threads of side 1 = processes of side 2 (default 2)")
    p.add_argument("--steps", type=int, default=0, help="steps per epoch (default 3; quick 2)")
    p.add_argument("--epochs", type=int, default=0, help="timed epochs per side (default 2; quick 1)")
    p.add_argument("--batch", type=int, default=0, help="global batch size (default 64; quick 16)")
    p.add_argument("--size", type=int, default=0, help="image size (default 64; quick 32)")
    p.add_argument("--repeats", type=int, default=2, help="alternate the three sides this many times")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # one torchrun rank
    args = p.parse_args()
    args.size = args.size or (32 if args.quick else 64)
    args.batch = args.batch or (16 if args.quick else 64)
    args.steps = args.steps or (2 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.padding = 4 if args.size == 32 else 8
    if args.worker:
        worker(args)
        return
    if args.batch % args.procs:
        raise SystemExit(f"--batch {args.batch} must be a multiple of --procs {args.procs}")
    args.threads = args.procs
    args.device = "cpu"
    torch.set_num_threads(args.procs)
    info = print_header(f"KD on CPU: 1 process x {args.procs} threads vs {args.procs} DDP processes x 1 thread", args)
    rep = Reporter(info, args.json)
    print(f"# {args.size}x{args.size}, {CLASSES} classes, global batch {args.batch}, {args.steps} steps/epoch, "
          f"1 warm-up + {args.epochs} timed epochs per side", flush=True)

    a = (args.size, args.batch, args.steps, args.epochs, args.padding)
    sides = {"reference (authors' recipe)": lambda: run_reference(*a),
             f"engine, 1 process x {args.procs} threads": lambda: run_engine(*a),
             f"engine, {args.procs} DDP processes x 1 thread (torchrun, gloo)": lambda: run_ddp(args)}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.repeats):
        for name, fn in (sides.items() if r % 2 == 0 else reversed(list(sides.items()))):
            t = fn()
            times[name] += t[1:]
            print(f"#   {name} run {r + 1}: epoch seconds {[round(x, 3) for x in t]} (first = warm-up)", flush=True)
    n_img = args.steps * args.batch
    ips = {k: [n_img / t for t in v] for k, v in times.items()}
    for k in sides:
        rep.figure(f"{k} images/s", median(ips[k]), "img/s", f"median of {len(ips[k])} epochs: {spread(ips[k])}")
    ref, one, ddp = (median(ips[k]) for k in sides)
    rep.figure(f"speed-up {args.procs} DDP processes / 1 process", ddp / one, "x")
    rep.figure("speed-up engine 1 process / reference", one / ref, "x", "goal: >= 1.5x on CPU")
    rep.figure(f"speed-up engine {args.procs} DDP processes / reference", ddp / ref, "x", "goal: >= 1.5x on CPU")
    rep.close()


if __name__ == "__main__":
    main()
