"""One module per ``main.py`` subcommand: ``add_arguments(parser)`` and ``run(cfg, args) -> int``.

Helpers that several commands share live here, so that no command imports another.
"""
from __future__ import annotations

from typing import Optional

from ..errors import ConfigError


def parse_seeds(text, optional: bool = False) -> Optional[list[int]]:
    """``--seeds 1,2,3`` -> [1, 2, 3]; distinct integers. Empty: None when ``optional``, else an error."""
    if text is None or not str(text).strip():
        if optional:
            return None
        raise ConfigError("--seeds is empty; give at least one seed, e.g. --seeds 1,2,3")
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers like 1,2,3, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} repeats a seed; give distinct integers, e.g. 0,1,2,3,4")
    return seeds
