"""Shared flags are spelled and meant the same in every command: --no-progress on every step that shows
progress, --device on every step that computes on a device, --task and --seeds alike everywhere."""
from __future__ import annotations

import types

import pytest

from dass import cli

ON_DEVICE = ["train-teacher", "kd", "build-db", "meta-train", "meta-test", "search", "demo"]


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def _stub(monkeypatch, seen: dict) -> None:
    def run(cfg, args):
        seen.update(cfg=cfg, device=cfg.run.device, no_progress=getattr(args, "no_progress", None))
        return 0

    # no add_arguments: only the shared flags are parsed
    monkeypatch.setattr(cli, "_load", lambda name: types.SimpleNamespace(run=run))


@pytest.mark.parametrize("command", ON_DEVICE)
def test_common_flags_are_listed_and_reach_the_command(command, capsys, monkeypatch):
    text = _help(capsys, command)
    assert "--no-progress" in text and "--device" in text
    seen: dict = {}
    _stub(monkeypatch, seen)
    assert cli.main([command, "--config", "configs/demo.yaml", "--no-progress", "--device", "cpu"]) == 0
    assert (seen["device"], seen["no_progress"]) == ("cpu", True)
    assert cli.main([command, "--config", "configs/demo.yaml"]) == 0
    assert (seen["device"], seen["no_progress"]) == ("cpu", False)   # demo.yaml's run.device


def test_make_tasks_takes_no_progress_but_no_device(capsys, monkeypatch):
    text = _help(capsys, "make-tasks")
    assert "--no-progress" in text and "--device" not in text
    seen: dict = {}
    _stub(monkeypatch, seen)
    assert cli.main(["make-tasks", "--config", "demo", "--no-progress"]) == 0 and seen["no_progress"] is True


def test_short_commands_do_not_take_them():
    for flag in ("--no-progress", "--device"):
        with pytest.raises(SystemExit) as e:
            cli.main(["info", flag, "cpu"])
        assert e.value.code == 2


@pytest.mark.parametrize("device, message", [
    ("cuda", "asks for CUDA but no CUDA device is present; use --device cpu"),
    ("cuda:1", "asks for CUDA but no CUDA device is present"),
    ("gpu", "'gpu' is not a device; use auto, cpu, cuda or cuda:N"),
    ("cuda:x", "is not a device"),
    ("cpu:0", "is not a device"),
])
def test_a_bad_or_absent_device_is_a_one_line_error_before_any_work(device, message, capsys, monkeypatch):
    import torch

    if torch.cuda.is_available() and device.startswith("cuda") and device != "cuda:x":
        pytest.skip("this machine has CUDA")
    seen: dict = {}
    _stub(monkeypatch, seen)
    assert cli.main(["kd", "--config", "demo", "--device", device]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not seen   # the command never ran
    # the config key says the same, for every command that loads a config
    assert cli.main(["info", "--config", "demo", f"run.device={device}"]) == (2 if "not a device" in message else 0)


def test_bare_demo_runs_the_embedded_default(monkeypatch):
    from dass.config import builtin_config, load_config, to_dict

    seen: dict = {}
    _stub(monkeypatch, seen)
    assert cli.main(["demo"]) == 0
    assert to_dict(seen["cfg"]) == to_dict(load_config(builtin_config("demo")))
    assert cli.main(["build-db"]) == 0                      # the other commands keep the paper's defaults
    assert to_dict(seen["cfg"]) == to_dict(load_config(None))
