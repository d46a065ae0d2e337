"""Bad inputs through the real command line.

Each case runs the CLI (``main.py``'s ``main``, in this process) or a downloader as a user would and checks
the house rule for user errors: exit status 2, exactly one stderr line starting with ``error:`` that names
the offending file or key, and nothing written (the working folder is snapshotted before and after). One
case runs a real child process, since what a shell sees is its exit status. The disk-full cases simulate
ENOSPC inside dass.io's atomic writer.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clitools import files_under, run_cli, run_main, tiny_config, write_config, write_toy_tasks

ARCH = json.dumps({"depth_config": [1, 1, 1, 1], "channel_widths": [[2], [4], [4], [8]]})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_toy_tasks(tmp_path_factory.mktemp("data"), 32, 16)


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _cli_case(tmp_path, cfg: dict, *argv: str, needles=()) -> str:
    """Run ``main.py`` with the config in tmp_path; nothing may appear in tmp_path."""
    conf = write_config(tmp_path / "conf.yaml", cfg)
    before = files_under(tmp_path)
    r = run_cli(*argv, "--config", str(conf), cwd=tmp_path)
    line = assert_user_error(r, *needles)
    assert files_under(tmp_path) == before, sorted(files_under(tmp_path) - before)
    return line


# --------------------------------------------------------------------------------------------- #
# configuration
# --------------------------------------------------------------------------------------------- #

def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  stage_widths: [4, 8\nkd: {epochs: 1}\n")
    before = files_under(tmp_path)
    r = run_cli("train-teacher", "--task", "toy-0", "--config", str(bad), cwd=tmp_path)
    assert_user_error(r, str(bad), "not valid YAML", "line")
    assert files_under(tmp_path) == before


@pytest.mark.slow
def test_a_user_error_is_exit_status_2_of_the_process(tmp_path):
    """What a shell sees: the process exits 2 with one ``error:`` line (the other cases run in-process)."""
    r = run_main("train-teacher", "--task", "toy-0", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert_user_error(r, "missing.yaml", "does not exist")


def test_unknown_config_key(tmp_path, data_root):
    cfg = tiny_config(tmp_path, data_root)
    cfg["kd"]["epochz"] = 3
    _cli_case(tmp_path, cfg, "train-teacher", "--task", "toy-0", needles=("unknown config key 'kd.epochz'",))


@pytest.mark.parametrize("section,key,value", [("kd", "logit_cache_mb", -1), ("embed", "workers", -2)])
def test_negative_speed_settings(tmp_path, data_root, section, key, value):
    cfg = tiny_config(tmp_path, data_root)
    cfg.setdefault(section, {})[key] = value
    _cli_case(tmp_path, cfg, "build-db", needles=(f"'{section}.{key}' must be >= 0",))


# --------------------------------------------------------------------------------------------- #
# datasets
# --------------------------------------------------------------------------------------------- #

def _own_data(tmp_path, data_root) -> Path:
    d = tmp_path / "data"
    shutil.copytree(data_root, d)
    return d


def test_missing_dataset_file(tmp_path, data_root):
    d = _own_data(tmp_path, data_root)
    (d / "toy-0" / "train_labels.npy").unlink()
    _cli_case(tmp_path, tiny_config(tmp_path, d), "train-teacher", "--task", "toy-0",
              needles=(str(d / "toy-0" / "train_labels.npy"), "does not exist"))


@pytest.mark.parametrize("argv", [
    ["build-db", "--no-progress"],
    ["search", "--method", "macs"],
    ["kd", "--task", "toy-2", "--arch", ARCH],
    ["demo"],
])
def test_missing_data_fails_before_any_work(tmp_path, data_root, argv):
    d = _own_data(tmp_path, data_root)
    (d / "toy-2" / "test_images.npy").unlink()       # the meta-test task: build-db would reach it last
    cfg = tiny_config(tmp_path, d, demo={"out": str(tmp_path / "demo")})
    _cli_case(tmp_path, cfg, *argv, needles=(str(d / "toy-2" / "test_images.npy"), "does not exist"))


def test_the_demo_on_the_paper_config_names_the_missing_file_and_the_demo_config(tmp_path):
    cfg = {"data": {"root": str(tmp_path / "data")}, "demo": {"out": str(tmp_path / "demo")}}
    line = _cli_case(tmp_path, cfg, "demo", needles=("tiny_imagenet", "does not exist", "configs/demo.yaml"))
    assert str(tmp_path / "data" / "tiny_imagenet" / "train_images.npy") in line


def test_truncated_npy(tmp_path, data_root):
    d = _own_data(tmp_path, data_root)
    p = d / "toy-0" / "train_images.npy"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _cli_case(tmp_path, tiny_config(tmp_path, d), "train-teacher", "--task", "toy-0",
              needles=(str(p), "truncated"))


def test_label_out_of_range(tmp_path, data_root):
    d = _own_data(tmp_path, data_root)
    (d / "toy-0" / "meta.json").write_text(json.dumps({"num_classes": 3}))
    lab = np.zeros(16, dtype=np.int64)
    lab[5] = 7
    np.save(d / "toy-0" / "test_labels.npy", lab)
    _cli_case(tmp_path, tiny_config(tmp_path, d), "train-teacher", "--task", "toy-0",
              needles=(str(d / "toy-0" / "test_labels.npy"), "[0, 7]", "[0, 3)"))


@pytest.mark.parametrize("split,bad,needle", [
    ("train", 99, "labels 99 that never occur in"),             # a stray id would widen the classifier to 100
    ("test", 2, "labels 2 that never occur in"),                 # train has classes 0, 1 only
])
def test_train_and_test_label_sets_must_agree(tmp_path, data_root, split, bad, needle):
    d = _own_data(tmp_path, data_root)
    for s in ("train", "test"):
        lab = np.load(d / "toy-0" / f"{s}_labels.npy") % 2
        if s == split:
            lab[3] = bad
        np.save(d / "toy-0" / f"{s}_labels.npy", lab)
    _cli_case(tmp_path, tiny_config(tmp_path, d), "train-teacher", "--task", "toy-0",
              needles=(str(d / "toy-0" / f"{split}_labels.npy"), needle))


def test_label_ids_with_a_gap(tmp_path, data_root):
    d = _own_data(tmp_path, data_root)
    for s in ("train", "test"):
        lab = np.load(d / "toy-0" / f"{s}_labels.npy")
        np.save(d / "toy-0" / f"{s}_labels.npy", np.where(lab == 2, 5, lab))   # classes 0, 1, 5
    _cli_case(tmp_path, tiny_config(tmp_path, d), "train-teacher", "--task", "toy-0",
              needles=(str(d / "toy-0" / "train_labels.npy"), "none of 2, 3, 4"))


# --------------------------------------------------------------------------------------------- #
# checkpoints
# --------------------------------------------------------------------------------------------- #

def _teacher_path(tmp_path) -> Path:
    p = tmp_path / "ckpt" / "teacher" / "toy-0" / "model_best.pth.tar"
    p.parent.mkdir(parents=True)
    return p


def test_corrupt_checkpoint(tmp_path, data_root):
    p = _teacher_path(tmp_path)
    p.write_bytes(b"PK\x03\x04 this is not a torch checkpoint")
    _cli_case(tmp_path, tiny_config(tmp_path, data_root), "kd", "--task", "toy-0", "--arch", ARCH,
              needles=(str(p), "corrupt"))


def test_checkpoint_for_another_class_count(tmp_path, data_root):
    from dass.nets import ResNet
    from dass.space import SearchSpace

    space = SearchSpace(stage_widths=[4, 8, 8, 16], max_depth=2, width_multipliers=[0.5, 1.0], image_size=8)
    p = _teacher_path(tmp_path)
    torch.save({"state_dict": ResNet(space.teacher(), 5, space.stage_strides).state_dict(), "best_acc": 50.0}, p)
    line = _cli_case(tmp_path, tiny_config(tmp_path, data_root), "kd", "--task", "toy-0", "--arch", ARCH,
                     needles=(str(p),))
    assert "class" in line  # toy-0 has 3 classes, the checkpoint's classifier 5


# --------------------------------------------------------------------------------------------- #
# downloads (file:// URLs: the downloader accepts them like http ones)
# --------------------------------------------------------------------------------------------- #

def _download(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A download script's ``main`` (dass.download.main of its group), in this process, from ``cwd``."""
    import contextlib
    import io

    from dass import download

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = download.main(script[len("download_"):-len(".py")], list(args), prog=script)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess([script, *args], rc, out.getvalue(), err.getvalue())


def test_zip_with_path_traversal_member(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    z = src / "preprocessed.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("preprocessed/ours/meta_train/ok.pt", b"fine")
        zf.writestr("../../escaped.txt", b"evil")
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"groups": {"preprocessed": {"root": ".", "files": [
        {"name": "preprocessed", "path": "preprocessed.zip", "url": z.as_uri(), "extract": True}]}}}))
    work = tmp_path / "work" / "inner"
    work.mkdir(parents=True)
    before = files_under(tmp_path)
    r = _download("download_preprocessed.py", "--manifest", str(m), "--no-progress", cwd=work)
    assert_user_error(r, "unsafe member '../../escaped.txt'", "preprocessed.zip")
    # the archive itself was fetched (it is the download); nothing from inside it was written anywhere
    assert files_under(tmp_path) - before == {"work/inner/preprocessed.zip"}
    assert not (work / "preprocessed").exists()


def test_download_with_wrong_checksum(tmp_path):
    payload = os.urandom(5000)
    src = tmp_path / "src" / "train_images.npy"
    src.parent.mkdir()
    src.write_bytes(payload)
    wrong = hashlib.sha256(payload + b"x").hexdigest()
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"groups": {"dataset": {"root": "data", "files": [
        {"name": "toy", "path": "toy/train_images.npy", "url": src.as_uri(), "sha256": wrong}]}}}))
    before = files_under(tmp_path)
    r = _download("download_dataset.py", "--manifest", str(m), "--no-progress", "--retries", "0", cwd=tmp_path)
    assert_user_error(r, "sha256 mismatch", "toy/train_images.npy", wrong)
    new = files_under(tmp_path) - before
    assert new == set(), new  # neither the final file nor a .part is left


# --------------------------------------------------------------------------------------------- #
# disk full on save (ENOSPC simulated inside dass.io's atomic writer)
# --------------------------------------------------------------------------------------------- #

def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    import dass.io as dio

    dest = tmp_path / "out" / "checkpoint.pth.tar"
    dio.atomic_torch_save({"epoch": 1, "w": torch.arange(10.0)}, dest)
    old = dest.read_bytes()

    def half_then_full(f):  # half the bytes reach the disk, then the device is full
        f.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        dio._atomic(dest, half_then_full)
    assert e.value.errno == errno.ENOSPC
    assert dest.read_bytes() == old
    assert sorted(p.name for p in dest.parent.iterdir()) == ["checkpoint.pth.tar"]


@pytest.mark.parametrize("save", ["torch", "text", "json"])
def test_disk_full_on_fsync_for_every_writer(tmp_path, monkeypatch, save):
    import dass.io as dio

    dest = tmp_path / "f"
    dest.write_bytes(b"previous contents")
    monkeypatch.setattr(dio.os, "fsync", _enospc)
    call = {"torch": lambda: dio.atomic_torch_save({"a": torch.ones(3)}, dest),
            "text": lambda: dio.atomic_write_text(dest, "new text"),
            "json": lambda: dio.write_json(dest, {"a": 1})}[save]
    with pytest.raises(OSError):
        call()
    monkeypatch.undo()
    assert dest.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_disk_full_new_file_is_not_created(tmp_path, monkeypatch):
    import dass.io as dio

    monkeypatch.setattr(dio.os, "fsync", _enospc)
    with pytest.raises(OSError):
        dio.atomic_torch_save({"a": 1}, tmp_path / "new" / "model_best.pth.tar")
    monkeypatch.undo()
    assert files_under(tmp_path) == set()


def test_disk_full_through_the_cli_is_one_line_exit_2(tmp_path, data_root, monkeypatch, capsys):
    import dass.io as dio
    from dass.cli import main

    conf = write_config(tmp_path / "conf.yaml", tiny_config(tmp_path, data_root))
    monkeypatch.setattr(dio.os, "fsync", _enospc)
    try:
        rc = main(["train-teacher", "--task", "toy-0", "--config", str(conf)])
    except OSError:
        rc = "raised OSError"
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "space" in err
