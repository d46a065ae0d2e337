#!/usr/bin/env python
"""Database build time vs number of students and number of processes (``dass.db.build``).

Three seeded toy tasks (one per split: meta-train, meta-valid, meta-test) in the authors' numpy
layout, the embedded default's search space at 16 px (widths 8/16/24/32, depth <= 3), KD recipe
shortened to ``--kd-epochs`` epochs. The teachers are trained once up front (timed on their own);
each measured build then starts from an empty database folder and trains, embeds and records
``students x 3`` students and assembles the task files:

* ``1 process, 1 thread``  -- ``dass.db.build.build`` (what ``main.py build-db`` runs);
* ``1 process, 2 threads`` -- the same with two torch threads;
* ``2 processes``          -- ``dass.db.build.build_parallel(cfg, 2)`` (``main.py build-db --workers 2``:
  one shard per spawned process, 1 thread each, then the merge), process start-up included;
* ``1 process, 1 thread, no teacher-logit cache`` -- the first row with ``kd.logit_cache_mb=0``: every
  student runs the teacher on every batch (the gain of ``dass.train.logit_cache``, side by side).

    python bench/bench_db_scaling.py --quick    # < 1 min: 2 and 4 students per task
    python bench/bench_db_scaling.py            # 4, 8, 16 and 32 students per task
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import Reporter, base_parser, print_header, setup

import torch  # noqa: E402

from dass.db import build as db  # noqa: E402
from dass.config import load_config  # noqa: E402
from dass.train.teachers import ensure_teacher  # noqa: E402
from dass.testing import write_toy_task  # noqa: E402


def config(work: Path, students: int, kd_epochs: int, threads: int, db_name: str, *extra: str):
    return load_config(None, [
        f"data.root={work / 'data'}", f"db.out={work / db_name}", f"run.checkpoint_dir={work / 'ckpt'}",
        f"run.out_dir={work / 'runs'}",
        "run.device=cpu", "space.stage_widths=[8,16,24,32]", "space.max_depth=3",
        "space.width_multipliers=[0.5,0.75,1.0]", "space.image_size=16", "data.crop_padding=2",
        "tasks.meta_train=[toy-0]", "tasks.meta_valid=[toy-1]", "tasks.meta_test=[toy-2]",
        "teacher.epochs=3", "teacher.batch_size=64", f"kd.epochs={kd_epochs}", "kd.batch_size=64",
        f"kd.eval_every={kd_epochs}", f"db.num_students={students}", "db.num_students_meta_test=0",
        f"meta.n_query={max(1, students - 1)}",
        f"train.num_threads={threads}",
        "predictor.dataset_samples_per_class=4", "predictor.dataset_feature_dim=32", *extra])


def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--students", default=None, help="comma-separated students per task (default 4,8,16,32; quick 2,4)")
    p.add_argument("--kd-epochs", type=int, default=2)
    p.add_argument("--images", type=int, default=256, help="training images per task")
    p.add_argument("--no-two-threads", action="store_true",
                   help="skip the 1 process x 2 threads row (always skipped with --quick: on a busy machine "
                        "OpenMP's spin-waiting makes it very slow)")
    args = p.parse_args()
    setup(args)
    counts = [int(s) for s in (args.students or ("2,4" if args.quick else "4,8,16,32")).split(",")]
    info = print_header("Database build time vs students and processes", args)
    rep = Reporter(info, args.json)
    work = Path(tempfile.mkdtemp(prefix="dass-bench-db-"))
    try:
        for k, classes in enumerate((4, 5, 4)):
            write_toy_task(work / "data", f"toy-{k}", classes, args.images, 64, k, size=16, noise=40)
        t0 = time.perf_counter()
        cfg0 = config(work, 2, args.kd_epochs, 1, "db-teachers")   # only its teachers are used
        for mode, task in db.task_plan(cfg0):
            from dass.data.tasks import load_task
            ensure_teacher(cfg0, task, load_task(task, cfg0), torch.device("cpu"), mode == "meta_test", progress=False)
        rep.figure("teachers (3 tasks, 3 epochs, 1 thread)", time.perf_counter() - t0, "s")
        print(f"# {args.images} train images per task, 16 px, KD {args.kd_epochs} epochs per student; "
              f"students per task {counts}")
        for n in counts:
            rows = {}
            variants = [("1 process, 1 thread", 1, 1, ()), ("1 process, 2 threads", 2, 1, ()),
                        ("2 processes (build-db --workers 2)", 1, 2, ()),
                        ("1 process, 1 thread, no teacher-logit cache", 1, 1, ("kd.logit_cache_mb=0",))]
            if args.quick or args.no_two_threads:
                variants.pop(1)
            for label, threads, procs, extra in variants:
                name = f"db-{n}-{threads}-{procs}-{len(extra)}"
                cfg = config(work, n, args.kd_epochs, threads, name, *extra)
                t0 = time.perf_counter()
                if procs == 1:
                    res = db.build(cfg, progress=False, log=lambda s: None)
                else:
                    res = db.build_parallel(cfg, procs, log=lambda s: None)
                dt = time.perf_counter() - t0
                assert res["done"] == 3 * n and len(res["assembled"]) == 3, res
                rows[label] = dt
                rep.figure(f"{3 * n} students ({n}/task), {label}", dt, "s", f"{3 * n / dt:.2f} students/s")
                shutil.rmtree(work / name)
            base = rows["1 process, 1 thread"]
            rep.figure(f"{3 * n} students: speed-up of 2 processes over 1 process x 1 thread",
                       base / rows["2 processes (build-db --workers 2)"], "x")
            rep.figure(f"{3 * n} students: speed-up of the teacher-logit cache (1 process x 1 thread)",
                       rows["1 process, 1 thread, no teacher-logit cache"] / base, "x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rep.close()


if __name__ == "__main__":
    main()
