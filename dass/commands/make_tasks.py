"""``main.py make-tasks``: write the embedded default's generated tasks and the bundled digits task.

Writes ``synth-0 .. synth-{N-1}`` (N = ``data.synthetic_num_tasks``) and ``digits`` into
``data.root`` in the authors' numpy layout, at ``space.image_size``. Tasks already complete with the
same recipe are skipped, so the command is safe to re-run after an interruption.
"""
from __future__ import annotations

import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--out", default=None, help="write here instead of data.root")
    p.add_argument("--force", action="store_true", help="regenerate tasks that are already complete")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.generate import describe_tasks, generate_tasks
    from ..train.teachers import probe_teacher_accuracy

    root = Path(args.out if args.out is not None else cfg.data.root)
    t0 = time.perf_counter()
    names = generate_tasks(cfg, out_root=root, progress=not (args.quiet or args.no_progress), force=args.force,
                           probe=probe_teacher_accuracy)
    dt = time.perf_counter() - t0
    print(f"make-tasks: {len(names)} tasks at {cfg.space.image_size}x{cfg.space.image_size} in {root.resolve()} "
          f"({dt:.1f} s)")
    if not args.quiet:
        for row in describe_tasks(cfg, root):
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0
