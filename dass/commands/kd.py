"""``dass kd``: knowledge-distil students from a task's teacher (docs/method.md#kd).

Which students (exactly one of):

- ``--arch JSON``: one student, ``{"depth_config": [...], "channel_widths": [[...], ...]}``;
- ``--from-search [--method dass]``: the student the search step picked. Contract with the search
  step: ``<search.out>/obtained_net_index.yaml`` holds ``net_index: {<task>: {<method>: <index>}}``
  (the authors' file) and ``<search.out>/<task>_candidates.pt`` a list whose entry ``index`` is an
  arch dict (or the authors' ``(flops, params, depth_config, channel_widths, ...)`` tuple);
- ``--archs FILE``: a list of students (JSON or YAML list of arch dicts, or a ``.pt`` list as
  above), the authors' "selected students for correlation", each distilled once.

Which teacher: the task's teacher under ``run.checkpoint_dir`` (trained or released), or ``--teacher
PATH`` (a user's own, with ``--teacher-acc`` or measured on the test split). With ``--from-search`` and no
``--teacher``, the teacher the search used (``<search.out>/<task>_search.json``) is taken, so the two
commands of the own-dataset route need the teacher's path only once.

``--arch``/``--from-search`` run every seed of ``--seeds`` (default ``kd.seeds`` = 1,2,3) and print
mean +- std; ``--archs`` uses ``--seeds`` (default ``db.kd_seed``) and writes
``<run.out_dir>/kd/<task>/selected.csv``. Every run has its own resumable run directory
``<run.out_dir>/kd/<task>/<arch>/seed<k>/`` and a row in ``<run.out_dir>/result.csv``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..io import write_csv
from ..space import SearchSpace
from ..students import parse_arch_json, read_archs
from . import add_task_argument, parse_seeds, resolve_tasks


def add_arguments(p) -> None:
    add_task_argument(p, "required")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", metavar="JSON", help='one student: {"depth_config":[...],"channel_widths":[[...],...]}')
    g.add_argument("--from-search", action="store_true",
                   help="the student picked by `dass search` (search.out/obtained_net_index.yaml)")
    g.add_argument("--archs", metavar="FILE", help="a JSON/YAML/.pt list of students, each distilled once")
    p.add_argument("--teacher", default=None, metavar="CKPT",
                   help="your own teacher checkpoint (dict with 'state_dict'); default: the task's teacher under "
                        "run.checkpoint_dir, or with --from-search the one the search used")
    p.add_argument("--teacher-acc", type=float, default=None,
                   help="the teacher's test accuracy in percent (default: the file's best_acc, else measured)")
    p.add_argument("--method", default=None,
                   help="label in result.csv; with --from-search, the search method to read (default search.method)")
    p.add_argument("--seeds", default=None, metavar="1,2,3", help="comma-separated KD seeds")


def _students(cfg, args, task: str):
    """``(archs, method)`` of the command line, read and validated before any data or teacher is loaded."""
    from ..search import arch_from_search
    from ..train.recipe import dist_env

    space = SearchSpace.from_config(cfg)
    if args.arch is not None:
        archs, method = [parse_arch_json(args.arch)], args.method or "manual"
    elif args.from_search:
        method = args.method or cfg.search.method
        arch, index = arch_from_search(cfg, task, method)
        archs = [arch]
        if dist_env()[0] == 0:
            print(f"# {task}: searched student #{index} by {method}: {arch}")
    else:
        archs, method = read_archs(args.archs, cfg.run.allow_legacy_pickle), args.method or "selected"
    for a in archs:
        space.validate(a)
    return archs, method


def _teacher(cfg, args, name: str, task, device):
    """The teacher to distil from and its accuracy (module docstring)."""
    from ..search import searched_teacher
    from ..train.teachers import load_teacher_for, load_user_teacher

    path, acc = args.teacher, args.teacher_acc
    if path is None and args.from_search:
        path, acc = searched_teacher(cfg, name, acc)
    if path is None:
        return load_teacher_for(cfg, name, task.num_classes, device)
    return load_user_teacher(cfg, path, task, device, acc)


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `dass --help` fast (see dass/cli.py)
    from ..data.tasks import load_task, require_task_files
    from ..train.recipe import dist_env, setup_device

    names = resolve_tasks(cfg, args.task)
    if args.teacher is not None and len(names) > 1:
        raise ConfigError("--teacher names one task's teacher; give a single --task with it")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    plans = [(name, *_students(cfg, args, name)) for name in names]   # every student read before any work
    require_task_files(cfg, names)
    device = setup_device(cfg)
    for name, archs, method in plans:
        task = load_task(name, cfg)
        teacher, t_acc = _teacher(cfg, args, name, task, device)
        if dist_env()[0] == 0:
            print(f"# teacher of {name}: {t_acc:.2f}% test accuracy")
        if args.archs is None:
            _distil_one(cfg, args, teacher, archs[0], task, method, seeds, device)
        else:
            _distil_list(cfg, args, teacher, archs, task, method, seeds or [cfg.db.kd_seed], device)
    return 0


def _distil_one(cfg, args, teacher, arch, task, method, seeds, device) -> None:
    from ..train.engine import kd_seeds
    from ..train.recipe import dist_env

    s = kd_seeds(teacher, arch, task, cfg, device, seeds=seeds, method=method, progress=not args.no_progress)
    if dist_env()[0] == 0:
        for r in s["runs"]:
            print(f"seed {r['seed']}: best acc {r['best_acc']:.2f}  final acc {r['final_acc']:.2f}  ({r['run_dir']})")
        print(f"{task.name} {method} {s['arch_str']}: best acc {s['best_acc_mean']:.2f} +- {s['best_acc_std']:.2f} "
              f"over seeds {s['seeds']} (sample std)")


def _distil_list(cfg, args, teacher, archs, task, method, seeds, device) -> None:
    from ..train.engine import kd_student
    from ..train.recipe import dist_env
    from ..train.runs import kd_run_dir

    space, lead, rows = SearchSpace.from_config(cfg), dist_env()[0] == 0, []
    for i, arch in enumerate(archs):
        for seed in seeds:
            r = kd_student(teacher, arch, task, cfg, seed, device, kd_run_dir(cfg, task.name, arch, seed),
                           progress=not args.no_progress, method=method)
            rows.append({"net_index": i, "seed": seed, "arch": str(arch), **arch.to_dict(),
                         "best_acc": r["best_acc"], "final_acc": r["final_acc"], "final_loss": r["final_loss"],
                         "macs": space.macs(arch, num_classes=task.num_classes),
                         "params": space.params(arch, task.num_classes)})
            if lead:
                print(f"[{i + 1}/{len(archs)}] seed {seed} {arch}: best acc {r['best_acc']:.2f}")
    if lead:
        out = Path(cfg.run.out_dir) / "kd" / task.name / "selected.csv"
        write_csv(out, [{**r, "depth_config": json.dumps(r["depth_config"]),
                         "channel_widths": json.dumps(r["channel_widths"])} for r in rows])
        print(f"# {len(rows)} runs; table in {out}")
