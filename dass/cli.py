"""``dass`` (or ``python main.py`` in a checkout): one CLI, one subcommand per pipeline step.

Every subcommand takes ``--config`` (a YAML file, or a built-in config: ``paper``, ``demo``, ``bench``;
``configs/paper.yaml`` names the built-in one when no such file is there) plus ``key=value`` overrides
(``kd.epochs=3``), resolved into one typed :class:`~dass.config.Config`. Each subcommand lives in its own module under
:mod:`dass.commands` exposing ``add_arguments(parser)`` and ``run(cfg, args) -> int``. Building the
parser imports every command module, so those modules import the pipeline (training, database,
meta-learning, plotting: scipy, matplotlib, ...) inside ``run`` and ``--help`` stays fast.

User errors (:class:`~dass.errors.DassError`) print one line ``error: ...`` and exit 2
(:func:`dass.errors.run_reporting_errors`).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from .config import BUILTIN, load_config, resolve_device
from .errors import run_reporting_errors

# subcommand -> (module, one-line help)
COMMANDS = {
    "info": ("dass.commands.info", "print the resolved config, the search space and the device"),
    "make-tasks": ("dass.commands.make_tasks", "generate the embedded default's task family (and the bundled real dataset)"),
    "make-splits": ("dass.commands.make_splits", "generate the 10 Tiny ImageNet class splits (authors' format)"),
    "train-teacher": ("dass.commands.train_teacher", "train the ResNet teacher of one or more tasks"),
    "kd": ("dass.commands.kd", "knowledge-distil a student from a task's teacher"),
    "build-db": ("dass.commands.build_db", "build the meta-training database (students KD-trained and recorded)"),
    "meta-train": ("dass.commands.meta_train", "meta-train the DaSS predictor with teacher-guided adaptation"),
    "meta-test": ("dass.commands.meta_test", "evaluate the predictor and the baselines on unseen tasks"),
    "search": ("dass.commands.search", "rank candidate students on a task and pick the best"),
    "demo": ("dass.commands.demo", "run the whole pipeline on the embedded default"),
    "download": ("dass.commands.download", "fetch datasets, teachers, the authors' database or the image sources"),
}


# Commands whose bare form has its own config: `dass demo` is the embedded default. Every other command
# without --config runs the built-in defaults, which are the paper's settings (dass/configs/paper.yaml).
DEFAULT_CONFIGS = {"demo": "demo"}

# Shared flags, with one spelling and one meaning everywhere: the steps that show progress bars, and the
# steps that compute on a device.
WITH_PROGRESS = ("make-tasks", "train-teacher", "kd", "build-db", "meta-train", "meta-test", "search", "demo")
ON_DEVICE = ("train-teacher", "kd", "build-db", "meta-train", "meta-test", "search", "demo")


def _add_common_flags(sp: argparse.ArgumentParser, name: str) -> None:
    if name in WITH_PROGRESS:
        sp.add_argument("--no-progress", action="store_true",
                        help="no progress bars (one log line per evaluation instead)")
    if name in ON_DEVICE:
        sp.add_argument("--device", default=None, metavar="auto|cpu|cuda[:N]",
                        help="where to run; same as the override run.device=...")


def _load(name: str):
    return importlib.import_module(COMMANDS[name][0])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dass", description="DaSS: distillation-aware student search.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        if getattr(_load(name), "OWN_PARSER", False):   # parses its own arguments (dass download)
            sub.add_parser(name, help=help_, description=help_, add_help=False)
            continue
        sp = sub.add_parser(name, help=help_, description=help_)
        default = f"default: the built-in {DEFAULT_CONFIGS[name]}" if name in DEFAULT_CONFIGS else \
            "default: the built-in defaults, the paper's settings"
        sp.add_argument("--config", default=None, help=f"a YAML file or a built-in config ({', '.join(BUILTIN)}; "
                                                       f"{default})")
        sp.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. kd.epochs=3")
        _add_common_flags(sp, name)
        mod = _load(name)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(sp)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["download"]:
        return _load("download").run_download(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2

    def body() -> int:
        overrides = list(args.overrides)
        if getattr(args, "device", None):
            overrides.append(f"run.device={args.device}")
        config = args.config if args.config is not None else DEFAULT_CONFIGS.get(args.command)
        cfg = load_config(config, overrides)
        if args.command in ON_DEVICE:
            resolve_device(cfg.run.device)   # a malformed or absent device fails here, before any work
        return _load(args.command).run(cfg, args)

    return run_reporting_errors(body)


def run() -> None:
    """The ``dass`` console script: :func:`main` with its exit status."""
    sys.exit(main())
