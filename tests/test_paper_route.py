"""A dry run of the README's "Paper-scale reproduction" route, so that it cannot silently break.

``configs/paper.yaml`` as it is (64 px, the ResNet42 teacher, the 181-entry encoding, students ending at full
width) with only the sizes turned down (a few images per class, 2 students per task, 2 episodes, 1 KD epoch, 1
seed, CPU). The authors' files are made in their layout (``dass.testing.write_authors_preprocessed``: no
layout metadata, pools nested under ``pred_inp``, architectures only in ``net_info/net_samples.pt``; a released
teacher with a DataParallel prefix) and served by a loopback mirror. Then, as the README says, in an empty
folder: the three downloaders -> meta-train -> meta-test -> search -> kd of the searched student. The only
deviation: the checkpoint downloader fetches the teacher the route uses (cub), not all 14 (31 MB each).
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clitools import ENV, MAIN, ROOT
from test_download import LoopbackServer

from dass.nets import ResNet
from dass.space import SearchSpace
from dass.testing import write_authors_preprocessed

PAPER = str(ROOT / "configs" / "paper.yaml")
META_TEST = ["cub", "dtd", "quickdraw", "stanford_cars"]
TASKS = {"meta_train": [f"tiny_imagenet-{k}" for k in range(8)],
         "meta_valid": ["tiny_imagenet-8", "tiny_imagenet-9"], "meta_test": META_TEST}
SMALL = ["run.allow_legacy_pickle=true", "run.device=cpu", "train.num_threads=1", "meta.episodes=2",
         "meta.eval_every=1", "kd.epochs=1", "kd.eval_every=1", "kd.batch_size=8"]


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def _write_datasets(data: Path, per_class: int = 4, classes: int = 4) -> None:
    """Every dataset of the download manifest in the authors' numpy layout, a few images of a few classes."""
    labels = np.repeat(np.arange(classes), per_class).astype(np.int64)
    for k, name in enumerate(META_TEST):
        d = data / name
        d.mkdir(parents=True)
        for split in ("train", "test"):
            np.save(d / f"{split}_images.npy", _images(len(labels), k))
            np.save(d / f"{split}_labels.npy", labels)
    ti = data / "tiny_imagenet"
    (ti / "labels").mkdir(parents=True)
    (ti / "10_split").mkdir()
    np.save(ti / "train_images.npy", _images(len(labels), 9))
    np.save(ti / "valid_images.npy", _images(len(labels), 10))
    np.save(ti / "labels" / "train_labels.npy", labels)
    np.save(ti / "labels" / "valid_labels.npy", labels)
    for s in range(10):
        half = len(labels) // 2
        np.savez(ti / "10_split" / f"split_{s}.npz", label_list=np.arange(classes), idx_train=np.arange(half),
                 idx_valid=np.arange(half, len(labels)))


def _write_mirror(mirror: Path) -> None:
    _write_datasets(mirror / "data")
    space = SearchSpace(last_block_full_width=True)   # the authors' students all end at 256 channels
    torch.manual_seed(0)
    sd = {f"module.{k}": v for k, v in ResNet(space.teacher(), 200).state_dict().items()}
    (mirror / "checkpoint" / "teacher" / "cub").mkdir(parents=True)
    torch.save({"state_dict": sd, "best_acc": 61.25}, mirror / "checkpoint" / "teacher" / "cub" / "model_best.pth.tar")
    pre = write_authors_preprocessed(space, mirror / "build" / "preprocessed", TASKS, n_students=2, num_candidates=4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(pre.rglob("*.pt")):
            z.write(f, str(f.relative_to(pre.parent)))
    (mirror / "preprocessed.zip").write_bytes(buf.getvalue())


def _run(cwd: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, *args], cwd=cwd, env={**ENV, "DASS_MIRROR": ""}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture
def mirror(tmp_path):
    srv = LoopbackServer(tmp_path / "mirror")
    _write_mirror(srv.root)
    with srv.serving():
        yield srv


def test_paper_route_dry_run(mirror, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    dl = ROOT / "download"
    _run(work, str(dl / "download_dataset.py"), "--name", "all", "--mirror", mirror.base)
    _run(work, str(dl / "download_checkpoint.py"), "--name", "cub", "--mirror", mirror.base)
    _run(work, str(dl / "download_preprocessed.py"), "--mirror", mirror.base)
    assert (work / "preprocessed" / "net_info" / "net_samples.pt").is_file()
    main = str(MAIN)
    out = _run(work, main, "meta-train", "--config", PAPER, *SMALL, "--no-progress")
    assert "2 episodes on 8 tasks" in out
    best = torch.load(work / "exp" / "meta_train" / "best.pt", weights_only=True)
    assert best["layout"]["encoding"]["dim"] == 181 and best["layout"]["noise"]["image_size"] == 64
    out = _run(work, main, "meta-test", "--config", PAPER, *SMALL, "--no-progress")
    assert "cub        dtd  quickdraw stanford_c" in out, out
    assert re.search(r"^dass( +-?1\.000){4}", out, re.M) and re.search(r"^macs( +-?1\.000){4}", out, re.M), out
    out = _run(work, main, "search", "--config", PAPER, *SMALL, "--no-progress")
    assert out.count("4 candidates") == 4
    picked = yaml.safe_load((work / "exp" / "search" / "obtained_net_index.yaml").read_text())["net_index"]
    assert sorted(picked) == sorted(META_TEST) and all(0 <= v["dass"] < 4 for v in picked.values())
    # what script/run_kd.sh runs (there on GPU 0), here on the CPU with one seed
    out = _run(work, main, "kd", "--config", PAPER, "--task", "cub", "--from-search", "--method", "dass",
               "--seeds", "1", "kd.remap=copy_paste_first", *SMALL)
    assert f"searched student #{picked['cub']['dass']} by dass" in out and "teacher of cub: 61.25%" in out
    assert re.search(r"cub dass .*: best acc \d+\.\d\d \+- 0\.00 over seeds \[1\]", out)
