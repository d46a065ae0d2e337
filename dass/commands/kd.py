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
from typing import Any

import yaml

from ..errors import ArchError, ConfigError, DataError
from ..io import read_authors_yaml, safe_torch_load, write_csv
from ..space import Arch, SearchSpace
from .train_teacher import check_task


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
# reading students
# --------------------------------------------------------------------------------------------- #

def arch_from_entry(entry: Any, source: str) -> Arch:
    """An arch dict ``{depth_config, channel_widths}`` or an authors' tuple
    ``(flops, params, depth_config, channel_widths, ...)`` (also nested as ``(index, tuple)``)."""
    try:
        if isinstance(entry, dict):
            if "depth_config" not in entry or "channel_widths" not in entry:
                raise ArchError(f"{source}: an architecture needs keys 'depth_config' and 'channel_widths', got "
                                f"{sorted(entry)}")
            return Arch.from_authors(entry["depth_config"], entry["channel_widths"])
        if isinstance(entry, (list, tuple)):
            if len(entry) >= 4 and isinstance(entry[2], (list, tuple)) and isinstance(entry[3], (list, tuple)):
                return Arch.from_authors(entry[2], entry[3])
            if len(entry) == 2 and isinstance(entry[1], (list, tuple)):
                return arch_from_entry(entry[1], source)
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ArchError):
            raise
        raise ArchError(f"{source}: malformed architecture {str(entry)[:80]}") from None
    raise ArchError(f"{source}: expected an architecture dict {{depth_config, channel_widths}}, got "
                    f"{str(entry)[:80]}")


def parse_arch_json(text: str) -> Arch:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--arch is not valid JSON ({e.msg} at column {e.colno}); pass e.g. "
                          f"'{{\"depth_config\":[1,1,1,1],\"channel_widths\":[[8],[16],[24],[32]]}}'") from None
    if not isinstance(obj, dict):
        raise ConfigError("--arch must be a JSON object with keys depth_config and channel_widths")
    return arch_from_entry(obj, "--arch")


def read_archs(path: str | Path, allow_pickle: bool = False) -> list[Arch]:
    """A list of students from a JSON, YAML or torch (.pt/.pth) file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"students file {p} does not exist; pass a JSON/YAML list of "
                        f"{{depth_config, channel_widths}} dicts")
    if p.suffix in (".pt", ".pth", ".tar"):
        items = safe_torch_load(p, allow_pickle=allow_pickle, what="students file")
    else:
        try:
            items = yaml.safe_load(p.read_text())  # YAML is a superset of JSON
        except (yaml.YAMLError, UnicodeDecodeError):
            raise DataError(f"students file {p} is neither valid JSON nor YAML; fix its syntax") from None
    if isinstance(items, dict) and "archs" in items:
        items = items["archs"]
    if not isinstance(items, (list, tuple)) or not items:
        raise DataError(f"students file {p} must hold a non-empty list of architectures")
    return [arch_from_entry(e, f"{p} entry {i}") for i, e in enumerate(items)]


def arch_from_search(cfg, task: str, method: str) -> tuple[Arch, int]:
    """The searched student of ``task`` by ``method`` (contract in the module docstring)."""
    out = Path(cfg.search.out)
    ypath = out / "obtained_net_index.yaml"
    # ours is plain YAML; the authors' is a yaml.dump of a defaultdict (docs/method.md#authors-compat)
    doc = read_authors_yaml(ypath, "search result", f"run `python main.py search --task {task}` first")
    try:
        index = doc["net_index"][task][method]
    except (KeyError, TypeError):
        raise DataError(f"search result {ypath} has no net_index.{task}.{method}; run the search for this task "
                        f"and method (or pass --method)") from None
    if isinstance(index, bool) or not isinstance(index, int):
        raise DataError(f"search result {ypath}: net_index.{task}.{method} must be an integer, got {index!r}")
    cpath = out / f"{task}_candidates.pt"
    if not cpath.is_file():  # the authors' search writes only the index; their KD resolves it here
        from ..db.records import net_samples_file

        cpath = net_samples_file(cfg.db.out)
        if not cpath.is_file():
            raise DataError(f"neither {out / f'{task}_candidates.pt'} nor {cpath} exists to resolve the searched "
                            f"index {index}; re-run `python main.py search --task {task}`")
    cands = safe_torch_load(cpath, allow_pickle=cfg.run.allow_legacy_pickle, what="search candidates file")
    if not isinstance(cands, (list, tuple)) or not 0 <= index < len(cands):
        n = len(cands) if isinstance(cands, (list, tuple)) else "no"
        raise DataError(f"search candidates file {cpath} has {n} candidates but the search picked index {index}; "
                        f"re-run the search")
    return arch_from_entry(cands[index], f"{cpath} entry {index}"), index


def parse_seeds(text) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers like 1,2,3, got {text!r}") from None
    if not seeds:
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds 1,2,3")
    return seeds


# --------------------------------------------------------------------------------------------- #
# the command
# --------------------------------------------------------------------------------------------- #

def run(cfg, args) -> int:
    # imported on use, not at the top: keeps `main.py --help` fast (see dass/cli.py)
    from ..data.tasks import load_task, require_task_files
    from ..train.teachers import load_teacher_for
    from ..train.engine import dist_env, kd_seeds, kd_student, kd_run_dir, setup_device

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
