"""One module per ``main.py`` subcommand: ``add_arguments(parser)`` and ``run(cfg, args) -> int``.

Helpers that several commands share live here, so that no command imports another.
"""
from __future__ import annotations

from typing import Optional

from ..errors import ConfigError

TASK_HELP = ("a task: a name from the config's tasks lists or your own dataset under data.root/<name>/ in the "
             "numpy layout; repeat --task for several, or --task all for every task of the config")


def add_task_argument(p, default: str) -> None:
    """``--task``, with one meaning in every command: repeatable, ``all`` = every task of the config."""
    p.add_argument("--task", action="append", default=None, metavar="NAME|all", help=f"{TASK_HELP} ({default})")


def resolve_tasks(cfg, values: Optional[list[str]], default: Optional[list[str]] = None) -> list[str]:
    """``--task`` values -> checked task names (``all`` expands to the config's tasks); ``default`` when
    none is given, or an error naming the flag when there is no default."""
    from ..data.tasks import check_task, known_tasks

    if not values:
        if default is None:
            raise ConfigError("--task is required: give a task name (repeatable) or --task all")
        return list(default)
    names: list[str] = []
    for v in values:
        for name in known_tasks(cfg) if v == "all" else [check_task(cfg, v)]:
            if name not in names:
                names.append(name)
    return names


def parse_seeds(text, optional: bool = False, flag: str = "--seeds") -> Optional[list[int]]:
    """``1,2,3`` -> [1, 2, 3]; distinct integers. Empty: None when ``optional``, else an error naming ``flag``
    (``--seeds``: KD seeds; ``--meta-seeds``: meta-training seeds)."""
    if text is None or not str(text).strip():
        if optional:
            return None
        raise ConfigError(f"{flag} is empty; give at least one seed, e.g. {flag} 1,2,3")
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers like 1,2,3, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{flag} {text!r} repeats a seed; give distinct integers, e.g. 0,1,2,3,4")
    return seeds
