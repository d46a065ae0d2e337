"""Student architectures from files: the user's lists and the authors' tuples.

``kd --arch/--archs`` and the search-result reader (:func:`dass.search.arch_from_search`) accept an
architecture as our dict ``{depth_config, channel_widths}`` or as the authors' tuple
``(flops, params, depth_config, channel_widths, ...)``, possibly nested as ``(index, tuple)``
(docs/method.md#file-formats).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import ArchError, ConfigError, DataError
from .io import safe_torch_load
from .space import Arch


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
