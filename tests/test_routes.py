"""The README cannot drift: its Python API block is executed, and every route it documents runs as written
there, at tiny sizes (only ``key=value`` overrides are appended; a loopback mirror stands in for the
internet, a stand-in ``sbatch`` for SLURM).

- ``own-dataset``: ``search`` then ``kd --from-search`` on a dataset no config names, with a teacher given by
  path to the search only (kd distils from the same teacher);
- ``paper``: the three downloaders, meta-train, meta-test, search and KD on the authors' files as their download
  leaves them (paper config, 64 px, ResNet42 teacher, 181-entry encoding);
- ``slurm``: ``script/slurm_build_db.sh submit`` -- teacher array, shard array, merge -- against a one-process
  build of the same database.
"""
from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clitools import ENV, ROOT, tiny_config, write_config, write_task, write_toy_tasks
from test_download import LoopbackServer

from dass.nets import ResNet
from dass.space import SearchSpace
from dass.testing import write_authors_preprocessed

README = ROOT / "README.md"
pytestmark = pytest.mark.slow


def readme_block(tag: str) -> list[list[str]]:
    """The commands of the README's ``<!-- route: tag -->`` block, split like a shell would (comments dropped)."""
    m = re.search(rf"<!-- route: {tag} -->\s*```bash\n(.*?)```", README.read_text(), re.S)
    assert m, f"README.md has no '<!-- route: {tag} -->' bash block"
    return [shlex.split(line, comments=True) for line in m.group(1).splitlines() if shlex.split(line, comments=True)]


def run(argv: list[str], extra: list[str] = ()) -> str:
    """One README command, in this process: ``dass``/``python main.py`` through the CLI, a download script
    through its ``main``; ``extra`` (the tiny sizes) is appended to CLI commands."""
    from dass import cli, download

    out, err = io.StringIO(), io.StringIO()
    if argv[0] == "dass" or argv[:2] == ["python", "main.py"]:
        args, fn = argv[1 if argv[0] == "dass" else 2:] + list(extra), cli.main
    elif argv[0] == "python" and argv[1].startswith("download/download_"):
        group = Path(argv[1]).stem[len("download_"):]
        groups = ("fonts", "icons") if group == "sources" else group
        args, fn = argv[2:], lambda a: download.main(groups, a, prog=argv[1])
    else:
        raise AssertionError(f"a README command this test does not know how to run: {argv}")
    with redirect_stdout(out), redirect_stderr(err):
        rc = fn(args)
    assert rc == 0, f"{' '.join(argv)} exited {rc}:\n{err.getvalue()[-3000:]}"
    return out.getvalue()


# --------------------------------------------------------------------------------------------- #
# the Python API block
# --------------------------------------------------------------------------------------------- #

def test_the_readme_python_api_block_runs(monkeypatch):
    m = re.search(r"<!-- api -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README.md has no '<!-- api -->' python block"
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(m.group(1), "README.md", "exec"), scope)
    assert scope["space"].encoding_dim == 37 and scope["arch"] in set(scope["space"].sample_many(64, rng=0))


# --------------------------------------------------------------------------------------------- #
# own dataset and teacher
# --------------------------------------------------------------------------------------------- #

TINY_PAPER = ["space.stage_widths=[4,8,8,16]", "space.max_depth=2", "space.width_multipliers=[0.5,1.0]",
              "space.image_size=8", "data.crop_padding=1", "data.test_drop_last=false", "teacher.epochs=1",
              "teacher.batch_size=16", "teacher.eval_every=1", "kd.epochs=1", "kd.batch_size=16",
              "kd.eval_every=1", "train.num_threads=1", "run.device=cpu", "db.num_students=3",
              "db.num_students_meta_test=3", "db.num_candidates=6", "meta.n_query=2", "meta.episodes=2",
              "meta.eval_every=2", "predictor.dataset_samples_per_class=2", "predictor.dataset_feature_dim=8",
              "tasks.meta_train=[toy-0]", "tasks.meta_valid=[toy-1]", "tasks.meta_test=[toy-2]"]


def test_search_and_kd_on_your_own_dataset_as_the_readme_writes_them(tmp_path, monkeypatch):
    work = tmp_path / "work"
    write_toy_tasks(work / "data", 32, 16)
    write_task(work / "data", "mine", 3, 32, 16, seed=7)           # in no config's task lists
    monkeypatch.chdir(work)
    # a meta-trained predictor (exp/meta_train/best.pt) and the user's own teacher at path/to/teacher.pth.tar
    run(["dass", "build-db", "--config", "configs/paper.yaml", "--no-progress"], TINY_PAPER)
    run(["dass", "meta-train", "--config", "configs/paper.yaml", "--no-progress"], TINY_PAPER)
    run(["dass", "train-teacher", "--config", "configs/paper.yaml", "--task", "mine", "--no-progress"],
        [*TINY_PAPER, "run.checkpoint_dir=elsewhere"])
    (work / "path" / "to").mkdir(parents=True)
    shutil.copyfile(work / "elsewhere" / "teacher" / "mine" / "model_best.pth.tar", work / "path/to/teacher.pth.tar")

    search, kd = readme_block("own-dataset")
    out = run(search, TINY_PAPER)
    assert "[search] mine: 6 candidates" in out
    out = run(kd, TINY_PAPER)
    assert re.search(r"mine dass .*: best acc \d+\.\d\d \+- \d+\.\d\d over seeds \[1, 2, 3\]", out), out
    searched = yaml.safe_load((work / "exp" / "search" / "obtained_net_index.yaml").read_text())
    assert f"searched student #{searched['net_index']['mine']['dass']}" in out
    assert "teacher of mine" in out and not (work / "checkpoint" / "teacher" / "mine").exists()  # the user's teacher
    # `kd --teacher PATH` names another teacher than the one the search adapted on
    shutil.copyfile(work / "path/to/teacher.pth.tar", work / "path/to/other.pth.tar")
    out = run([*kd, "--teacher", "path/to/other.pth.tar", "--teacher-acc", "12.5", "--seeds", "4"],
              TINY_PAPER)
    assert "# teacher of mine: 12.50% test accuracy" in out and "over seeds [4]" in out


# --------------------------------------------------------------------------------------------- #
# the paper's route on the authors' files
# --------------------------------------------------------------------------------------------- #

META_TEST = ["cub", "dtd", "quickdraw", "stanford_cars"]
TASKS = {"meta_train": [f"tiny_imagenet-{k}" for k in range(8)],
         "meta_valid": ["tiny_imagenet-8", "tiny_imagenet-9"], "meta_test": META_TEST}
SMALL = ["run.device=cpu", "train.num_threads=1", "meta.episodes=2", "meta.eval_every=1", "kd.epochs=1",
         "kd.eval_every=1", "kd.batch_size=8", "data.test_drop_last=false"]


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def _write_datasets(data: Path, per_class: int = 4, classes: int = 4) -> None:
    """Every dataset of the download manifest's ``all`` in the authors' numpy layout, a few images each."""
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
    half = len(labels) // 2
    for s in range(10):
        np.savez(ti / "10_split" / f"split_{s}.npz", label_list=np.arange(classes), idx_train=np.arange(half),
                 idx_valid=np.arange(half, len(labels)))


def _write_mirror(mirror: Path) -> None:
    _write_datasets(mirror / "data")
    space = SearchSpace(last_block_full_width=True)   # the authors' students all end at 256 channels
    torch.manual_seed(0)
    sd = {f"module.{k}": v for k, v in ResNet(space.teacher(), 200).state_dict().items()}
    for task in [*TASKS["meta_train"], *TASKS["meta_valid"], *META_TEST]:
        d = mirror / "checkpoint" / "teacher" / task
        d.mkdir(parents=True)
        if task == "cub":       # the teacher the route's KD loads; the others are fetched, never read
            torch.save({"state_dict": sd, "best_acc": 61.25}, d / "model_best.pth.tar")
        else:
            (d / "model_best.pth.tar").write_bytes(b"a released teacher the route does not load")
    pre = write_authors_preprocessed(space, mirror / "build" / "preprocessed", TASKS, n_students=2, num_candidates=4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(pre.rglob("*.pt")):
            z.write(f, str(f.relative_to(pre.parent)))
    (mirror / "preprocessed.zip").write_bytes(buf.getvalue())


def test_the_paper_route_as_the_readme_writes_it(tmp_path, monkeypatch):
    srv = LoopbackServer(tmp_path / "mirror")
    _write_mirror(srv.root)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cmds = readme_block("paper")
    assert [c[1] for c in cmds[:3]] == ["download/download_dataset.py", "download/download_checkpoint.py",
                                       "download/download_preprocessed.py"]
    with srv.serving():
        monkeypatch.setenv("DASS_MIRROR", srv.base)
        outs = [run(c, SMALL) for c in cmds]
    assert (work / "preprocessed" / "net_info" / "net_samples.pt").is_file()
    meta_train, meta_test, search, kd = outs[3:]
    assert "2 episodes on 8 tasks" in meta_train
    best = torch.load(work / "exp" / "meta_train" / "best.pt", weights_only=True)
    assert best["layout"]["encoding"]["dim"] == 181 and best["layout"]["noise"]["image_size"] == 64
    assert "cub        dtd  quickdraw stanford_c" in meta_test, meta_test
    assert re.search(r"^macs( +-?1\.000){4}", meta_test, re.M), meta_test
    assert (work / "exp" / "meta_train" / "meta_test" / "config.yaml").is_file()   # meta-test keeps its config
    assert search.count("4 candidates") == 4
    picked = yaml.safe_load((work / "exp" / "search" / "obtained_net_index.yaml").read_text())["net_index"]
    assert sorted(picked) == sorted(META_TEST) and all(0 <= v["dass"] < 4 for v in picked.values())
    assert f"searched student #{picked['cub']['dass']} by dass" in kd and "teacher of cub: 61.25%" in kd
    assert re.search(r"cub dass .*: best acc \d+\.\d\d \+- \d+\.\d\d over seeds \[1, 2, 3\]", kd), kd


# --------------------------------------------------------------------------------------------- #
# the SLURM job arrays
# --------------------------------------------------------------------------------------------- #

SBATCH = r"""#!/usr/bin/env bash
# a stand-in for SLURM's sbatch: runs the --wrap command at once, once per array index, and logs the call
array=""; wrap=""
echo "sbatch $*" >> "$SBATCH_LOG"
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array="${1#--array=}" ;;
    --wrap) wrap="$2"; shift ;;
  esac
  shift
done
if [ -n "$array" ]; then
  lo=${array%-*}; hi=${array#*-}
  for ((k = lo; k <= hi; k++)); do
    SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) bash -c "$wrap" >> "$SBATCH_LOG" 2>&1 || exit 1
  done
else
  bash -c "$wrap" >> "$SBATCH_LOG" 2>&1 || exit 1
fi
echo $RANDOM
"""


def test_the_slurm_arrays_build_the_database_a_single_process_builds(tmp_path):
    from dass.config import load_config
    from dass.db import build as db
    from dass.db.records import load_records

    data = write_toy_tasks(tmp_path / "data", 32, 16)
    conf = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "array", data))
    ref = write_config(tmp_path / "ref.yaml", tiny_config(tmp_path / "one", data))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sbatch").write_text(SBATCH)
    (tmp_path / "bin" / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = {**ENV, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{ENV['PATH']}", "DASS_PYTHON": sys.executable,
           "SBATCH_LOG": str(log)}
    (submit,) = readme_block("slurm")
    assert submit[:3] == ["bash", "script/slurm_build_db.sh", "submit"]
    argv = ["bash", str(ROOT / submit[1]), "submit", str(conf), "2", *submit[5:]]   # 2 shards, the README's options
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + log.read_text()
    calls = [ln for ln in log.read_text().splitlines() if ln.startswith("sbatch ")]
    assert len(calls) == 3 and "--array=0-1" in calls[0] and "--dependency=afterok:" in calls[1] + calls[2]
    assert "--partition=gpu" in calls[0]
    db.build(load_config(ref), progress=False, log=lambda s: None)
    a, b = load_config(conf), load_config(ref)
    for mode, task in db.task_plan(a):
        x, y = load_records(a.db.out, mode, task), load_records(b.db.out, mode, task)
        assert x.archs == y.archs and torch.equal(x.fmaps, y.fmaps) and torch.equal(x.best_acc, y.best_acc), task
    assert (Path(a.db.out).parent / "search" / "toy-2.pt").is_file()            # the merge job wrote the pools
