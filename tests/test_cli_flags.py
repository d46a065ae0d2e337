"""The long-running subcommands share --no-progress and --device, spelled and meant the same everywhere."""
from __future__ import annotations

import types

import pytest

from dass import cli

LONG = ["train-teacher", "kd", "build-db", "meta-train", "meta-test", "search", "demo"]


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", LONG)
def test_common_flags_are_listed_and_reach_the_command(command, capsys, monkeypatch):
    text = _help(capsys, command)
    assert "--no-progress" in text and "--device" in text
    seen = {}

    def run(cfg, args):
        seen.update(device=cfg.run.device, no_progress=args.no_progress)
        return 0

    stub = types.SimpleNamespace(run=run)               # no add_arguments: only the shared flags are parsed
    monkeypatch.setattr(cli, "_load", lambda name: stub)
    assert cli.main([command, "--config", "configs/demo.yaml", "--no-progress", "--device", "cpu:0"]) == 0
    assert seen == {"device": "cpu:0", "no_progress": True}
    assert cli.main([command, "--config", "configs/demo.yaml"]) == 0
    assert seen == {"device": "cpu", "no_progress": False}   # demo.yaml's run.device


def test_short_commands_do_not_take_them(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["info", "--no-progress"])
    assert e.value.code == 2


def test_bare_demo_runs_the_embedded_default(monkeypatch):
    from dass.config import load_config, to_dict

    seen = {}
    monkeypatch.setattr(cli, "_load", lambda name: types.SimpleNamespace(run=lambda cfg, args: seen.update(cfg=cfg)))
    assert cli.main(["demo"]) == 0
    assert to_dict(seen["cfg"]) == to_dict(load_config(cli.CONFIG_DIR / "demo.yaml"))
    assert cli.main(["build-db"]) == 0                      # the other commands keep the paper's defaults
    assert to_dict(seen["cfg"]) == to_dict(load_config(None))
