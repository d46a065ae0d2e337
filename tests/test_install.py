"""The package installs: ``pip install .`` into a fresh virtual environment gives every subpackage, the
built-in configs and the download manifest as package data, and a ``dass`` command that works from a folder
outside the checkout. (The fresh environment borrows the third-party packages of this one through a
``.pth`` file, so the test needs no download; the dass package itself is installed from the checkout.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # what an sdist of the checkout holds (setuptools builds in the source folder: a copy keeps the checkout clean)
    src = tmp / "src"
    shutil.copytree(ROOT / "dass", src / "dass", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / f, src / f)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-build-isolation", "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    return env_dir


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "dass"), *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_the_installed_package_is_whole(venv, tmp_path):
    py = venv / "bin" / "python"
    code = ("import importlib, importlib.resources as r, dass; "
            "[importlib.import_module(m) for m in ('dass.data.sources', 'dass.train.engine', 'dass.db.build', "
            "'dass.predictor.trainer', 'dass.commands.kd', 'dass.search', 'dass.evaluate')]; "
            "print(dass.__file__); "
            "print(sorted(p.name for p in r.files('dass').joinpath('configs').iterdir() if p.name.endswith('.yaml'))); "
            "print(r.files('dass').joinpath('download_manifest.yaml').is_file())")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    where, configs, manifest = out.stdout.splitlines()
    assert str(venv) in where and str(ROOT) not in where          # the installed copy, not the checkout
    assert configs == "['bench.yaml', 'demo.yaml', 'paper.yaml']" and manifest == "True"


def test_the_dass_command_works_outside_the_checkout(venv, tmp_path):
    r = _run(venv, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "make-tasks" in r.stdout and "download" in r.stdout
    r = _run(venv, "info", "--config", "configs/paper.yaml", "--section", "space", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "last_block_full_width: true" in r.stdout and "encoding length 181" in r.stdout
    assert "unknown (dass" in r.stdout                              # an installed copy has no git revision
    r = _run(venv, "make-tasks", "--config", "demo", f"data.root={tmp_path / 'data'}", "data.synthetic_num_tasks=1",
             "--no-progress", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "synth-0" / ".complete").is_file() and (tmp_path / "data" / "digits").is_dir()
    r = _run(venv, "download", "--group", "dataset", "--name", "cub", "--dry-run", "--root", str(tmp_path / "d"),
             cwd=tmp_path)
    assert r.returncode == 0 and "cub/train_images.npy" in r.stdout, r.stderr
    r = _run(venv, "info", "--config", "nowhere.yaml", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: config file nowhere.yaml does not exist")
