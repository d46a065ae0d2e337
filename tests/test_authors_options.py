"""The authors' options the project offers beside its own: sampler-size check, label choice, fixed inner
rate (tests/test_inner_lrs.py), heavy teacher augmentation, their Spearman CSV and remap variants."""
import pytest

from dass.config import load_config
from dass.errors import ConfigError


def test_num_students_must_cover_a_support_and_a_full_query_set():
    with pytest.raises(ConfigError, match=r"'db.num_students' = 50 must be at least meta.n_query \+ 1 = 51"):
        load_config(None, ["db.num_students=50"])
    assert load_config(None, ["db.num_students=9", "meta.n_query=8"]).db.num_students == 9
    paper = load_config("configs/paper.yaml")
    assert (paper.db.num_students, paper.db.num_students_meta_test, paper.meta.seed) == (51, 50, 2)
    assert paper.search.inner_lr == "initial"


def test_meta_test_tasks_get_their_own_student_count(tmp_path):
    from dass.database import work_items

    cfg = load_config(None, ["db.num_students=4", "meta.n_query=3", "db.num_students_meta_test=2",
                             "tasks.meta_train=[a]", "tasks.meta_valid=[b]", "tasks.meta_test=[c]",
                             "space.stage_widths=[4,8,8,16]", "space.max_depth=2", "space.width_multipliers=[0.5,1.0]",
                             "space.image_size=8"])
    counts = {}
    for it in work_items(cfg):
        counts[it.task] = counts.get(it.task, 0) + 1
    assert counts == {"a": 4, "b": 4, "c": 2}


def test_acc_type_chooses_the_label(tmp_path):
    import torch

    from dass.meta import load_tasks
    from dass.testing import fixture_db_for_config
    from test_meta import small_cfg

    cfg = small_cfg(tmp_path)
    fixture_db_for_config(cfg)
    best = load_tasks(cfg, "meta_train")
    final = load_tasks(small_cfg(tmp_path, "meta.acc_type=final"), "meta_train")
    for b, f in zip(best, final):
        assert torch.equal(f.best_acc, b.final_acc) and not torch.equal(f.best_acc, b.best_acc)
    with pytest.raises(ConfigError, match="acc_type"):
        load_config(None, ["meta.acc_type=last"])
