"""Every file of predictor inputs carries its layout (encoding + noise); incompatible files are refused even
when their shapes agree, and files without a layout (the authors') take the one the config declares."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clitools import tiny_config, write_config, write_toy_tasks

from dass.cli import main
from dass.config import load_config
from dass.db.records import task_file, teacher_file
from dass.errors import DassError
from dass.layout import config_layout, difference
from dass.space import SearchSpace
from dass.testing import write_authors_preprocessed


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A database built by ``build-db`` and a predictor meta-trained on it (tiny space, 8 px)."""
    tmp = tmp_path_factory.mktemp("layout")
    cfg = tiny_config(tmp, write_toy_tasks(tmp / "data", 24, 12),
                      meta={"out": str(tmp / "meta"), "episodes": 2, "eval_every": 2, "n_query": 2})
    conf = str(write_config(tmp / "c.yaml", cfg))
    for cmd in (["build-db", "--no-progress"], ["meta-train", "--no-progress"]):
        assert main([*cmd, "--config", conf]) == 0
    return conf, load_config(conf, [])


def test_every_written_file_carries_the_layout(built):
    conf, cfg = built
    want = config_layout(cfg)
    assert want["encoding"]["dim"] == 2 * 4 * 2 + 1 and want["noise"] == {"seed": 0, "count": 1, "image_size": 8,
                                                                           "stage": 4}
    root = Path(cfg.db.out)
    files = [task_file(root, "meta_train", "toy-0"), teacher_file(root, "meta_train", "toy-0"),
             teacher_file(root, "meta_test", "toy-2"), root.parent / "search" / "toy-2.pt",
             Path(cfg.meta.out) / "best.pt", Path(cfg.meta.out) / "last.pt"]
    for f in files:
        assert torch.load(f, weights_only=True)["layout"] == want, f
    assert torch.load(root.parent / "search" / "toy-2.pt", weights_only=True)["teacher"]["layout"] == want


@pytest.mark.parametrize("override,diff", [
    ("embed.noise_seed=1", "noise.seed 0 vs 1"),
    ("space.width_multipliers=[0.75,1.0]", "encoding.width_multipliers [0.5, 1.0] vs [0.75, 1.0]"),
])
def test_pool_embedded_on_the_fly_with_another_layout_is_refused(built, capsys, override, diff):
    conf, cfg = built
    teacher = Path(cfg.run.checkpoint_dir) / "teacher" / "toy-2" / "model_best.pth.tar"
    # same encoding length and map shape: only the stored layout tells the two apart
    other = load_config(conf, [override])
    assert SearchSpace.from_config(other).encoding_dim == SearchSpace.from_config(cfg).encoding_dim
    rc = main(["search", "--config", conf, "--task", "toy-2", "--teacher", str(teacher), "--no-progress", override,
               f"search.out={Path(cfg.search.out).parent / 'search-other'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert f"predictor checkpoint {Path(cfg.meta.out) / 'best.pt'} and the inputs of task toy-2 use different " \
           f"input layouts ({diff})" in err
    # the same pool with the predictor's own layout is scored
    assert main(["search", "--config", conf, "--task", "toy-2", "--teacher", str(teacher), "--no-progress",
                 f"search.out={Path(cfg.search.out).parent / 'search-same'}"]) == 0


def test_mixed_database_files_are_refused(built, tmp_path, capsys):
    conf, cfg = built
    import shutil

    db = tmp_path / "db"
    shutil.copytree(cfg.db.out, db)
    for f in (task_file(db, "meta_valid", "toy-1"), teacher_file(db, "meta_valid", "toy-1")):
        d = torch.load(f, weights_only=True)
        d["layout"]["noise"]["seed"] = 7
        torch.save(d, f)
    rc = main(["meta-train", "--config", conf, "--no-progress", f"db.out={db}", f"meta.out={tmp_path / 'm'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "task toy-1 and the other meta-training tasks use different input layouts (noise.seed 7 vs 0)" \
        in err
    # a teacher record that disagrees with its own students
    d = torch.load(teacher_file(db, "meta_valid", "toy-1"), weights_only=True)
    d["layout"]["noise"]["seed"] = 0
    d["layout"]["noise"]["count"] = 2
    torch.save(d, teacher_file(db, "meta_valid", "toy-1"))
    rc = main(["meta-train", "--config", conf, "--no-progress", f"db.out={db}", f"meta.out={tmp_path / 'm'}"])
    assert rc == 2 and "the toy-1 students it supports use different input layouts (noise.count 2 vs 1)" \
        in capsys.readouterr().err


def test_files_without_a_layout_take_the_configs(tmp_path, capsys):
    cfg = tiny_config(tmp_path, tmp_path / "data", db={"out": str(tmp_path / "pre" / "ours")},
                      meta={"out": str(tmp_path / "meta"), "episodes": 2, "eval_every": 2, "n_query": 2})
    sc = cfg["space"]
    space = SearchSpace(sc["stage_widths"], max_depth=sc["max_depth"], width_multipliers=sc["width_multipliers"],
                        image_size=sc["image_size"])
    write_authors_preprocessed(space, tmp_path / "pre", {"meta_train": ["toy-0"], "meta_valid": ["toy-1"],
                                                         "meta_test": ["toy-2"]}, n_students=6, num_candidates=5)
    conf = str(write_config(tmp_path / "c.yaml", cfg))
    assert main(["meta-train", "--config", conf, "--no-progress"]) == 0
    best = torch.load(tmp_path / "meta" / "best.pt", weights_only=True)
    assert best["layout"] == config_layout(load_config(conf, []))
    assert main(["search", "--config", conf, "--no-progress"]) == 0
    # the same layout-less pool under a config that declares another noise is another layout
    capsys.readouterr()
    assert main(["search", "--config", conf, "--no-progress", "embed.num_noise=3"]) == 2
    assert "(noise.count 1 vs 3)" in capsys.readouterr().err


def test_difference_names_the_first_field():
    a = {"encoding": {"dim": 181, "max_depth": 5}, "noise": {"seed": 0}}
    assert difference(a, a) is None and difference(a, None) is None
    assert difference(a, {**a, "noise": {"seed": 2}}) == "noise.seed 0 vs 2"
    with pytest.raises(DassError):
        from dass.layout import require_same
        require_same(a, {**a, "encoding": {"dim": 181, "max_depth": 4}}, "x", "y", "fix")


def test_malformed_layout_entry_is_refused(built, tmp_path):
    from dass.db.records import load_records

    conf, cfg = built
    import shutil

    db = tmp_path / "db"
    shutil.copytree(cfg.db.out, db)
    f = task_file(db, "meta_train", "toy-0")
    d = torch.load(f, weights_only=True)
    d["layout"] = "v1"
    torch.save(d, f)
    with pytest.raises(DassError, match=f"{f}: its 'layout' entry is not a mapping"):
        load_records(db, "meta_train", "toy-0")


def test_finished_predictor_is_reused_only_for_its_layout(built, tmp_path):
    import copy
    import shutil

    from dass.db.records import load_split_records
    from dass.predictor.trainer import train_or_reuse

    conf, cfg = built
    shutil.copytree(cfg.meta.out, tmp_path / "meta")
    cfg = load_config(conf, [f"meta.out={tmp_path / 'meta'}"])
    tasks = [load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test")]
    best = train_or_reuse(cfg, *tasks, "cpu", progress=False)
    before = best.read_bytes()
    assert train_or_reuse(cfg, *tasks, "cpu", progress=False) == best and best.read_bytes() == before
    for recs in tasks:
        for r in recs:
            r.layout = copy.deepcopy(r.layout)
            r.layout["noise"]["seed"] = 5
    train_or_reuse(cfg, *tasks, "cpu", progress=False)
    assert torch.load(best, weights_only=True)["layout"]["noise"]["seed"] == 5


def test_finished_predictor_is_not_reused_for_a_rebuilt_database(built, tmp_path, capsys):
    """Same config, same layout, other labels (a database rebuilt with other content): train again."""
    import shutil

    from dass.db.records import load_split_records
    from dass.predictor.trainer import train_or_reuse

    conf, cfg = built
    shutil.copytree(cfg.meta.out, tmp_path / "meta")
    cfg = load_config(conf, [f"meta.out={tmp_path / 'meta'}"])
    tasks = [load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test")]
    best = tmp_path / "meta" / "best.pt"
    last = best.parent / "last.pt"
    train_or_reuse(cfg, *tasks, "cpu", progress=False)
    before = last.read_bytes()
    assert train_or_reuse(cfg, *tasks, "cpu", progress=False) == best and last.read_bytes() == before
    r0 = tasks[0][0]
    r0.best_acc = r0.best_acc + torch.arange(len(r0), dtype=r0.best_acc.dtype)    # same students, other labels
    train_or_reuse(cfg, *tasks, "cpu", progress=False)
    assert "training it again" in capsys.readouterr().err
    after = last.read_bytes()
    assert after != before
    assert torch.load(last, weights_only=True)["data"] == torch.load(best, weights_only=True)["data"]
    # unseen tasks are not part of what it learned from: changing them reuses the run
    for r in tasks[2]:
        r.best_acc = r.best_acc + 1.0
    train_or_reuse(cfg, *tasks, "cpu", progress=False)
    assert last.read_bytes() == after


def test_search_writes_net_samples_where_the_authors_kd_looks(built, tmp_path, capsys):
    from dass.db.records import net_samples_file

    conf, cfg = built
    teacher = str(Path(cfg.run.checkpoint_dir) / "teacher" / "toy-2" / "model_best.pth.tar")
    ours = net_samples_file(cfg.db.out)
    before = ours.read_bytes()
    fresh = tmp_path / "pre" / "ours"
    args = ["search", "--config", conf, "--task", "toy-2", "--teacher", teacher, "--no-progress",
            f"search.out={tmp_path / 's'}"]
    assert main([*args, f"db.out={fresh}"]) == 0          # no list there yet: written, in pool order
    written = torch.load(net_samples_file(fresh), weights_only=True)
    cands = torch.load(tmp_path / "s" / "toy-2_candidates.pt", weights_only=True)
    assert [(e[2], e[3]) for e in written] == [(c["depth_config"], c["channel_widths"]) for c in cands]
    capsys.readouterr()
    assert main([*args, "db.num_candidates=3"]) == 0       # another pool: the list there is kept, with a note
    assert "lists other candidates than this pool and is not overwritten" in capsys.readouterr().err
    assert ours.read_bytes() == before
