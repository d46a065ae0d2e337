"""``main.py build-db``: build the meta-training database (docs/method.md#database)."""
from __future__ import annotations

import time
from pathlib import Path

from ..config import save_config
from ..errors import DassError
from ..io import write_json


def add_arguments(p) -> None:
    p.add_argument("--split", action="append", choices=["meta_train", "meta_valid", "meta_test"],
                   help="only these splits (repeatable; default: all three)")
    p.add_argument("--shard", type=int, default=0, help="this process's shard index (with --num-shards)")
    p.add_argument("--num-shards", type=int, default=1, help="split the student work list over N processes/jobs")
    p.add_argument("--workers", type=int, default=1,
                   help="run N local worker processes (one shard each, 1 thread each), then merge")
    p.add_argument("--merge", action="store_true", help="only assemble the task files from finished shards")
    p.add_argument("--teachers", action="store_true",
                   help="only train (or check) the teachers of this shard's tasks (tasks K, K+N, ...): the first "
                        "stage of a cluster build (script/slurm_build_db.sh)")
    p.add_argument("--no-candidates", action="store_true", help="skip the search-candidate pools of meta-test datasets")
    p.add_argument("--report", action="store_true", help="only print the sanity report of an existing database")


def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import require_task_files
    from ..db import build as db
    from ..db import report
    from ..search import build_candidates

    modes = args.split
    if args.num_shards < 1 or args.workers < 1:
        raise DassError("--num-shards and --workers must be at least 1")
    if args.workers > 1 and args.num_shards > 1:
        raise DassError("use either --workers (local processes) or --shard/--num-shards (separate jobs), not both")
    if not args.report:
        if not args.merge:
            with_candidates = not args.no_candidates and (modes is None or "meta_test" in modes)
            require_task_files(cfg, db.tasks_needing_data(cfg, modes, with_candidates))
        save_config(cfg, cfg.db.out, {"command": "build-db"})
        t0 = time.time()
        if args.teachers:
            plan = db.teachers_of_shard(cfg, modes, args.shard, args.num_shards)
            db.ensure_teachers(cfg, plan, progress=not args.no_progress)
            print(f"[build-db] teachers of shard {args.shard}/{args.num_shards} ready: {', '.join(t for _, t in plan)}")
            return 0
        if args.merge:
            db.merge(cfg, modes, strict=True)
        elif args.workers > 1:
            res = db.build_parallel(cfg, args.workers, modes)
            print(f"[build-db] {res['done']} students trained, {res['skipped']} reused, {time.time() - t0:.0f}s")
        else:
            res = db.build(cfg, modes, args.shard, args.num_shards, progress=not args.no_progress)
            print(f"[build-db] {res['done']} students trained, {res['skipped']} reused, {time.time() - t0:.0f}s")
            if args.num_shards > 1:
                print("[build-db] when every shard has finished, run the same command with --merge")
        last_shard = args.num_shards == 1 or args.merge
        if last_shard and not args.no_candidates and (modes is None or "meta_test" in modes):
            build_candidates(cfg, progress=not args.no_progress)
    rows = report.sanity_report(cfg, modes, write=not args.report)
    print(report.format_database_report(rows))
    if any(r["ceiling"] != "" for r in rows):
        fam = report.family_summary(cfg, rows, modes)
        print(report.format_family(fam))
        if not args.report:   # --report only reads: a committed or downloaded database is left as it is
            write_json(Path(cfg.db.out) / "family.json", fam)
    flat = [r["task"] for r in rows if r["acc_std"] == 0]
    if flat:
        print(f"[build-db] WARNING: every student has the same accuracy on {', '.join(flat)}: the database is "
              f"degenerate there (too few KD epochs or a broken teacher?)")
    return 0
