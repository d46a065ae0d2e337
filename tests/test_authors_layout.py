"""The authors' files as they lie after download: their YAML (a yaml.dump of a defaultdict), their search pool
(inputs nested under ``pred_inp``, architectures only in ``net_info/net_samples.pt``, the teacher record under
``ours/meta_test/teacher``), read by ``meta-test``, ``search`` and ``kd --from-search``; and our search outputs
written where their tools look for them."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import yaml
from clitools import tiny_config, write_config, write_toy_tasks

from dass.cli import main
from dass.db.records import net_samples_file
from dass.errors import DassError
from dass.io import read_authors_yaml
from dass.nets import ResNet
from dass.search import load_candidates, update_obtained_index
from dass.space import Arch, SearchSpace
from dass.testing import write_authors_preprocessed

TASKS = {"meta_train": ["toy-0"], "meta_valid": ["toy-1"], "meta_test": ["toy-2"]}


def authors_yaml(index: dict) -> str:
    """What the authors' search writes: ``yaml.dump`` of ``{'net_index': defaultdict(dict)}``."""
    doc = {"net_index": defaultdict(dict)}
    for task, by_method in index.items():
        doc["net_index"][task].update(by_method)
    return yaml.dump(doc)


# ------------------------------------------------------------------------------------------ YAML
def test_authors_yaml_is_read_as_plain_dict(tmp_path):
    p = tmp_path / "obtained_net_index.yaml"
    p.write_text(authors_yaml({"cub": {"dass": 3}, "dtd": {"dass": 7, "random": 1}}))
    assert "!!python/object/apply:collections.defaultdict" in p.read_text()
    doc = read_authors_yaml(p)
    assert doc == {"net_index": {"cub": {"dass": 3}, "dtd": {"dass": 7, "random": 1}}}
    assert type(doc["net_index"]) is dict


@pytest.mark.parametrize("text,tag", [
    ("x: !!python/object/apply:os.system ['true']\n", "os.system"),
    ("x: !!python/name:os.system ''\n", "os.system"),
    ("x: !!python/object/apply:collections.OrderedDict [[[a, 1]]]\n", "OrderedDict"),
    ("x: !!python/object/apply:collections.defaultdict\n  args: [!!python/name:os.system '']\n", "os.system"),
    ("x: !!python/object/apply:collections.defaultdict\n  state: {a: 1}\n", "state"),
])
def test_other_python_tags_are_refused(tmp_path, text, tag):
    p = tmp_path / "obtained_net_index.yaml"
    p.write_text(text)
    with pytest.raises(DassError, match=f"{re.escape(str(p))} holds a YAML tag .*{tag}") as e:
        read_authors_yaml(p, "search result")
    assert "\n" not in str(e.value)


def test_search_result_merges_into_the_authors_file(tmp_path):
    (tmp_path / "obtained_net_index.yaml").write_text(authors_yaml({"cub": {"dass": 3}}))
    path = update_obtained_index(tmp_path, "dtd", "dass", 5)
    assert yaml.safe_load(path.read_text()) == {"net_index": {"cub": {"dass": 3}, "dtd": {"dass": 5}}}
    assert yaml.load(path.read_text(), Loader=yaml.Loader)["net_index"]["cub"]["dass"] == 3  # their reader


# ------------------------------------------------------------------------------------- the pool
@pytest.fixture
def authors_tree(tmp_path):
    space = SearchSpace(stage_widths=[4, 8, 8, 16], max_depth=2, width_multipliers=[0.5, 1.0], image_size=8)
    root = write_authors_preprocessed(space, tmp_path / "preprocessed", TASKS, n_students=8, num_candidates=6)
    return space, root


def test_authors_pool_is_read_with_net_samples_and_teacher_record(authors_tree):
    space, root = authors_tree
    rec = load_candidates(root / "search" / "toy-2.pt", "toy-2", db_out=root / "ours", space=space)
    samples = torch.load(root / "net_info" / "net_samples.pt", weights_only=True)
    assert rec.archs == [Arch.from_authors(s[2], s[3]) for s in samples] and rec.net_index == list(range(6))
    assert rec.macs.tolist() == [float(space.macs(a)) for a in rec.archs]
    assert rec.fmaps.shape == (6, 16, 1, 1) and torch.isnan(rec.best_acc).all()
    t = torch.load(root / "ours" / "meta_test" / "teacher" / "toy-2-logs_noise_actmap.pt", weights_only=True)
    assert rec.teacher.acc == pytest.approx(t["best_acc"][0]) and torch.equal(rec.teacher.fmap, t[
        "noise_actmap_stage-4"][0][0])


def test_authors_pool_without_its_companions_is_refused(authors_tree):
    space, root = authors_tree
    pool = root / "search" / "toy-2.pt"
    (root / "ours" / "meta_test" / "teacher" / "toy-2-logs_noise_actmap.pt").unlink()
    with pytest.raises(DassError, match="carry no teacher record and .*meta_test/teacher/toy-2"):
        load_candidates(pool, "toy-2", db_out=root / "ours", space=space)
    net_samples_file(root / "ours").unlink()
    with pytest.raises(DassError, match="carry no architectures and net_info/net_samples.pt has no entries"):
        load_candidates(pool, "toy-2", db_out=root / "ours", space=space)
    torch.save({"pred_inp": {}}, pool)
    with pytest.raises(DassError, match="neither 'arch_enc' nor 'pred_inp.arch_enc'"):
        load_candidates(pool, "toy-2", db_out=root / "ours", space=space)


# -------------------------------------------------------------------------- the commands, end to end
def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def _released_teacher(cfg: dict, task: str, num_classes: int) -> None:
    """A teacher checkpoint as the authors release it: DataParallel key prefix, ``state_dict`` + ``best_acc``."""
    sc = cfg["space"]
    space = SearchSpace(sc["stage_widths"], max_depth=sc["max_depth"], width_multipliers=sc["width_multipliers"])
    torch.manual_seed(0)
    sd = {f"module.{k}": v for k, v in ResNet(space.teacher(), num_classes).state_dict().items()}
    d = Path(cfg["run"]["checkpoint_dir"]) / "teacher" / task
    d.mkdir(parents=True)
    torch.save({"state_dict": sd, "best_acc": 41.5}, d / "model_best.pth.tar")


def test_meta_test_search_and_kd_on_the_authors_files(authors_tree, tmp_path, capsys):
    space, root = authors_tree
    # the authors' tasks hold 8 students: 7 >= n_query + 1 as their sampler needs
    cfg = tiny_config(tmp_path, write_toy_tasks(tmp_path / "data", 24, 12), db={"out": str(root / "ours"), "num_students": 7},
                      meta={"out": str(tmp_path / "meta"), "episodes": 4, "eval_every": 2, "n_query": 6})
    _released_teacher(cfg, "toy-2", 3)
    conf = str(write_config(tmp_path / "c.yaml", cfg))
    _cli(capsys, "meta-train", "--config", conf, "--no-progress")
    out = _cli(capsys, "meta-test", "--config", conf, "--baselines", "macs", "--no-progress")
    assert re.search(r"toy-2", out)
    theirs = net_samples_file(root / "ours").read_bytes()
    out = _cli(capsys, "search", "--config", conf, "--no-progress")
    assert "6 candidates" in out and net_samples_file(root / "ours").read_bytes() == theirs
    search = tmp_path / "search"
    index = yaml.safe_load((search / "obtained_net_index.yaml").read_text())["net_index"]["toy-2"]["dass"]
    samples = torch.load(net_samples_file(root / "ours"), weights_only=True)
    picked = Arch.from_authors(samples[index][2], samples[index][3])
    out = _cli(capsys, "kd", "--config", conf, "--task", "toy-2", "--from-search", "--seeds", "1")
    assert f"searched student #{index} by dass: {picked}" in out
    # the authors' route: their search leaves only the defaultdict YAML; their KD resolves it in net_samples.pt
    (search / "toy-2_candidates.pt").unlink()
    other = (index + 1) % len(samples)
    (search / "obtained_net_index.yaml").write_text(authors_yaml({"toy-2": {"dass": other}}))
    out = _cli(capsys, "kd", "--config", conf, "--task", "toy-2", "--from-search", "--seeds", "1")
    assert f"searched student #{other} by dass: {Arch.from_authors(samples[other][2], samples[other][3])}" in out
