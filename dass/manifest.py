"""The manifest of a committed database: what was built, from which config, by which command.

docs/method.md#benchmark. ``<db folder>/MANIFEST.json`` (the folder holding ``db.out``, e.g. ``bench/db``)
lists every committed file with its sha256 and size, the fingerprint of the config sections that
determine the database, and the command that rebuilds it. :func:`verify_manifest` fails on one changed
byte, a missing file, or a config whose database-determining sections changed.

    python -m dass.manifest write  --config configs/bench.yaml --command "..."   # after a build
    python -m dass.manifest verify --config configs/bench.yaml
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

from .config import load_config
from .errors import DassError
from .io import atomic_write_text, sha256_file

NAME = "MANIFEST.json"
# The config sections that determine a database's contents (the rest: where things go, how fast).
SECTIONS = ("space", "data", "tasks", "teacher", "kd", "train", "db", "embed")
# What a committed database holds: task files, teacher records, search pools, reports, the teachers' weights.
PATTERNS = ("preprocessed/**/*.pt", "preprocessed/report.csv", "preprocessed/family.json", "search/**/*.pt",
            "net_info/*.pt",
            "checkpoint/teacher/*/model_best.pth.tar")


def config_fingerprint(config_path: str | Path) -> str:
    """sha256 over the database-determining sections of the YAML file as written (defaults added to the
    code later do not change it; an edit of those sections does)."""
    with open(config_path) as f:
        doc = yaml.safe_load(f) or {}
    part = {k: doc.get(k) for k in SECTIONS}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def db_folder(cfg) -> Path:
    return Path(cfg.db.out).parent


def _files(root: Path) -> list[Path]:
    found = {p for pat in PATTERNS for p in root.glob(pat) if p.is_file() and "_work" not in p.parts}
    return sorted(found)


def write_manifest(config_path: str | Path, command: str) -> Path:
    cfg = load_config(config_path)
    root = db_folder(cfg)
    files = _files(root)
    if not any(p.match("*-logs_noise_actmap.pt") for p in files):
        raise DassError(f"{root}: no task files to list; build the database first (main.py build-db --config "
                        f"{config_path})")
    doc = {"config": str(config_path), "config_fingerprint": config_fingerprint(config_path), "command": command,
           "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
           "total_bytes": sum(p.stat().st_size for p in files),
           "files": {str(p.relative_to(root)): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}}
    out = root / NAME
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    return out


def verify_manifest(config_path: str | Path, root: Optional[Path] = None) -> dict:
    """The manifest, after checking every listed file and the config fingerprint (DassError otherwise)."""
    root = Path(root) if root is not None else db_folder(load_config(config_path))
    path = root / NAME
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DassError(f"{path}: cannot read the manifest ({e}); restore it from the repository") from None
    if doc.get("config_fingerprint") != config_fingerprint(config_path):
        raise DassError(f"{path}: {config_path} has changed the sections that determine this database "
                        f"({', '.join(SECTIONS)}); restore the config or rebuild: {doc.get('command')}")
    for rel, want in doc.get("files", {}).items():
        p = root / rel
        if not p.is_file():
            raise DassError(f"{p}: listed in {path} but missing; restore it from the repository")
        if p.stat().st_size != want["bytes"] or sha256_file(p) != want["sha256"]:
            raise DassError(f"{p}: does not match its sha256 in {path}; restore it from the repository or rebuild: "
                            f"{doc.get('command')}")
    return doc


def verify_benchmark(cfg, config_path: str | Path) -> Optional[dict]:
    """The verified manifest of ``cfg``'s database, or None when the database has no manifest."""
    root = db_folder(cfg)
    return verify_manifest(config_path, root) if (root / NAME).is_file() else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dass.manifest", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["write", "verify"])
    p.add_argument("--config", required=True)
    p.add_argument("--command", default="", help="the command that rebuilds the database (write)")
    a = p.parse_args(argv)
    try:
        if a.action == "write":
            print(f"wrote {write_manifest(a.config, a.command)}")
        else:
            doc = verify_manifest(a.config)
            print(f"ok: {len(doc['files'])} files match {db_folder(load_config(a.config)) / NAME}")
    except DassError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
