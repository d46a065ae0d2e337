"""``main.py search``: rank candidate students on a task with the meta-trained predictor (docs/method.md#search)."""
from __future__ import annotations

from ..config import save_config
from ..errors import ConfigError
from ..predictor.methods import REGISTRY, help_text
from . import add_task_argument, resolve_tasks


def add_arguments(p) -> None:
    add_task_argument(p, "default: every meta-test task")
    p.add_argument("--teacher", default=None, help="your own teacher checkpoint (dict with 'state_dict'); "
                                                   "candidates are then embedded on the fly")
    p.add_argument("--teacher-acc", type=float, default=None,
                   help="the teacher's test accuracy in percent (default: evaluated on the test split)")
    p.add_argument("--checkpoint", action="append", default=None,
                   help="predictor checkpoint (repeatable: several are scored as their seed ensemble); default: "
                        "the committed predictors (meta.predictors), else the method's meta-training seeds, "
                        "else <meta.out>/best.pt")
    p.add_argument("--method", default=None, choices=list(REGISTRY),
                   help="default: search.method (dass). Trained baselines use the predictor meta-test trained. "
                        + help_text())


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import require_task_files
    from ..db.records import candidate_file
    from ..search import format_top, run_search, search_root

    tasks = resolve_tasks(cfg, args.task, list(cfg.tasks.meta_test))
    if args.teacher is not None and len(tasks) > 1:
        raise ConfigError("--teacher names one task's teacher; give a single --task with it")
    # tasks without a stored candidate pool (or with the user's own teacher) are embedded from their data
    require_task_files(cfg, [t for t in tasks if args.teacher or not candidate_file(search_root(cfg), t).is_file()])
    save_config(cfg, cfg.search.out, {"command": "search", "tasks": tasks})
    for task in tasks:
        res = run_search(cfg, task, args.method, args.checkpoint, teacher_path=args.teacher,
                         teacher_acc=args.teacher_acc, progress=not args.no_progress)
        inside = int(res.allowed.sum())
        print(f"[search] {task}: {len(res.records)} candidates, {inside} inside the budget; method {res.method}")
        print(format_top(res, cfg.search.top_k))
    print(f"[search] wrote {cfg.search.out}/obtained_net_index.yaml and per-task *_scores.csv")
    return 0
