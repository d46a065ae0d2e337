"""``main.py kd``: knowledge-distil students from a task's trained teacher (docs/method.md#kd).

Which students (exactly one of):

- ``--arch JSON``: one student, ``{"depth_config": [...], "channel_widths": [[...], ...]}``;
- ``--from-search [--method dass]``: the student the search step picked. Contract with the search
  step: ``<search.out>/obtained_net_index.yaml`` holds ``net_index: {<task>: {<method>: <index>}}``
  (the authors' file) and ``<search.out>/<task>_candidates.pt`` a list whose entry ``index`` is an
  arch dict (or the authors' ``(flops, params, depth_config, channel_widths, ...)`` tuple);
- ``--archs FILE``: a list of students (JSON or YAML list of arch dicts, or a ``.pt`` list as
  above), the authors' "selected students for correlation", each distilled once.

``--arch``/``--from-search`` run every seed of ``--seeds`` (default ``kd.seeds`` = 1,2,3) and print
mean +- std; ``--archs`` uses ``--seeds`` (default ``db.kd_seed``) and writes
``<run.out_dir>/kd/<task>/selected.csv``. Every run has its own resumable run directory
``<run.out_dir>/kd/<task>/<arch>/seed<k>/`` and a row in ``<run.out_dir>/result.csv``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..data.tasks import check_task
from ..io import write_csv
from ..space import SearchSpace
from ..students import parse_arch_json, read_archs
from . import parse_seeds


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, help="task whose teacher distils (a name from the config's tasks)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", metavar="JSON", help='one student: {"depth_config":[...],"channel_widths":[[...],...]}')
    g.add_argument("--from-search", action="store_true",
                   help="the student picked by `main.py search` (search.out/obtained_net_index.yaml)")
    g.add_argument("--archs", metavar="FILE", help="a JSON/YAML/.pt list of students, each distilled once")
    p.add_argument("--method", default=None,
                   help="label in result.csv; with --from-search, the search method to read (default search.method)")
    p.add_argument("--seeds", default=None, metavar="1,2,3", help="comma-separated seeds")


# --------------------------------------------------------------------------------------------- #
# the command
# --------------------------------------------------------------------------------------------- #

def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import load_task, require_task_files
    from ..search import arch_from_search
    from ..train.engine import kd_seeds, kd_student
    from ..train.recipe import dist_env, setup_device
    from ..train.runs import kd_run_dir
    from ..train.teachers import load_teacher_for

    name = check_task(cfg, args.task)
    space = SearchSpace.from_config(cfg)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    # Read and validate every student before any data or teacher is loaded: bad input fails fast.
    if args.arch is not None:
        archs, method = [parse_arch_json(args.arch)], args.method or "manual"
    elif args.from_search:
        method = args.method or cfg.search.method
        arch, index = arch_from_search(cfg, name, method)
        archs = [arch]
        if dist_env()[0] == 0:
            print(f"# {name}: searched student #{index} by {method}: {arch}")
    else:
        archs, method = read_archs(args.archs, cfg.run.allow_legacy_pickle), args.method or "selected"
    for a in archs:
        space.validate(a)

    require_task_files(cfg, [name])
    device = setup_device(cfg)
    task = load_task(name, cfg)
    teacher, t_acc = load_teacher_for(cfg, name, task.num_classes, device)
    lead = dist_env()[0] == 0
    if lead:
        print(f"# teacher of {name}: {t_acc:.2f}% test accuracy")

    if args.archs is None:
        s = kd_seeds(teacher, archs[0], task, cfg, device, seeds=seeds, method=method, progress=not args.no_progress)
        if lead:
            for r in s["runs"]:
                print(f"seed {r['seed']}: best acc {r['best_acc']:.2f}  final acc {r['final_acc']:.2f}  ({r['run_dir']})")
            print(f"{name} {method} {s['arch_str']}: best acc {s['best_acc_mean']:.2f} +- {s['best_acc_std']:.2f} "
                  f"over seeds {s['seeds']} (sample std)")
        return 0

    seeds = seeds or [cfg.db.kd_seed]
    rows = []
    for i, arch in enumerate(archs):
        for seed in seeds:
            r = kd_student(teacher, arch, task, cfg, seed, device, kd_run_dir(cfg, name, arch, seed),
                           progress=not args.no_progress, method=method)
            rows.append({"net_index": i, "seed": seed, "arch": str(arch), **arch.to_dict(),
                         "best_acc": r["best_acc"], "final_acc": r["final_acc"], "final_loss": r["final_loss"],
                         "macs": space.macs(arch, num_classes=task.num_classes),
                         "params": space.params(arch, task.num_classes)})
            if lead:
                print(f"[{i + 1}/{len(archs)}] seed {seed} {arch}: best acc {r['best_acc']:.2f}")
    if lead:
        out = Path(cfg.run.out_dir) / "kd" / name / "selected.csv"
        write_csv(out, [{**r, "depth_config": json.dumps(r["depth_config"]),
                         "channel_widths": json.dumps(r["channel_widths"])} for r in rows])
        print(f"# {len(rows)} runs; table in {out}")
    return 0
