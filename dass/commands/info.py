"""``main.py info``: what a run would use."""
from __future__ import annotations

import yaml

from ..config import git_revision, resolve_device, to_dict
from ..errors import ConfigError
from ..space import SearchSpace


def add_arguments(p) -> None:
    p.add_argument("--section", default=None, help="print only this config section")


def run(cfg, args) -> int:
    d = to_dict(cfg)
    if args.section:
        if args.section not in d:
            raise ConfigError(f"unknown config section '{args.section}' (known: {', '.join(d)})")
        d = {args.section: d[args.section]}
    print(yaml.safe_dump(d, sort_keys=False).rstrip())
    space = SearchSpace.from_config(cfg)
    t = space.teacher()
    print(f"# space: {space}")
    print(f"# encoding length {space.encoding_dim}; teacher MACs {space.macs(t):,} at "
          f"{space.image_size}px, params {space.params(t):,} (without classifier)")
    print(f"# device: {resolve_device(cfg.run.device)}; git revision: {git_revision()}")
    return 0
