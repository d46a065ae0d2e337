"""``main.py train-teacher``: train the ResNet teacher of one task, or of every configured task
(docs/method.md#teachers).

``--task NAME`` trains one task; ``--task all`` every task of ``tasks.meta_train``,
``tasks.meta_valid`` and ``tasks.meta_test``. Meta-test tasks (or any task with ``--meta-test``) use
``teacher.lr_meta_test``, as the authors' teachers of the unseen datasets do. A task whose teacher is
ready (:mod:`dass.train.teachers`: a finished run of ours or a released ``model_best.pth.tar``) is checked
against the task and skipped, never retrained; an interrupted one resumes. Prints a table of accuracies.
"""
from __future__ import annotations

from . import add_task_argument, resolve_tasks


def add_arguments(p) -> None:
    add_task_argument(p, "required")
    p.add_argument("--meta-test", action="store_true",
                   help="use teacher.lr_meta_test (automatic for tasks listed in tasks.meta_test)")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import load_task, require_task_files
    from ..train.engine import train_teacher
    from ..train.recipe import dist_env, setup_device
    from ..train.runs import teacher_dir
    from ..train.teachers import is_teacher_ready, load_teacher_for, teacher_status

    jobs = [(n, n in cfg.tasks.meta_test or args.meta_test) for n in resolve_tasks(cfg, args.task)]
    require_task_files(cfg, [n for n, _ in jobs])
    device = setup_device(cfg)
    rows = []
    for name, meta_test in jobs:
        task = load_task(name, cfg)
        if is_teacher_ready(cfg, name):  # checked, never retrained: a bad ready file is an error naming it
            acc = load_teacher_for(cfg, name, task.num_classes)[1]
            rows.append((name, meta_test, f"skipped ({teacher_status(cfg, name)})", None, acc))
            continue
        r = train_teacher(task, cfg, device=device, meta_test=meta_test, progress=not args.no_progress)
        rows.append((name, meta_test, "trained", r["final_acc"], r["best_acc"]))
    if dist_env()[0] == 0:
        print(f"{'task':<24} {'lr':>7} {'status':<20} {'final acc':>9} {'best acc':>9}")
        for name, meta_test, status, final, best in rows:
            lr = cfg.teacher.lr_meta_test if meta_test else cfg.teacher.lr
            f = f"{final:9.2f}" if final is not None else f"{'-':>9}"
            print(f"{name:<24} {lr:>7g} {status:<20} {f} {best:9.2f}")
        print(f"# teachers in {teacher_dir(cfg, '<task>').parent}")
    return 0
