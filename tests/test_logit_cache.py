"""The teacher-logit cache shared by the students of a task (dass.train.logit_cache)."""
import copy

import pytest
import torch
from test_train import STUDENT, make_cfg, tiny_task

from dass.nets import ResNet
from dass.remap import remapped_student
from dass.space import Arch
from dass.train import engine as train
from dass.train.logit_cache import TeacherLogitCache, stream_bytes, stream_key

OTHER = Arch([1, 1, 1, 1], [[8], [16], [24], [32]])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    cfg = make_cfg(root, "kd.epochs=2", "kd.eval_every=1")
    task = tiny_task()
    torch.manual_seed(0)
    teacher = ResNet(cfg_teacher_arch(cfg), task.num_classes).eval()
    return cfg, task, teacher


def cfg_teacher_arch(cfg):
    from dass.space import SearchSpace

    return SearchSpace.from_config(cfg).teacher()


def _kd(cfg, task, teacher, arch, seed=0, cache=None):
    student = remapped_student(teacher, arch, cfg.kd.remap)
    res = train.distill(teacher, student, task, cfg, seed=seed, out_dir=None, progress=False, logit_cache=cache)
    return res, student.state_dict()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _counting(teacher):
    """A copy of the teacher whose forward calls are counted."""
    t = copy.deepcopy(teacher)
    calls = {"n": 0}
    t.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    return t, calls


def test_students_sharing_the_cache_match_uncached_runs_bit_for_bit(setup):
    cfg, task, teacher = setup
    ref_a, sd_a = _kd(cfg, task, teacher, STUDENT)
    ref_b, sd_b = _kd(cfg, task, teacher, OTHER)
    cache = TeacherLogitCache(2 ** 30)
    counted, calls = _counting(teacher)
    got_a, c_a = _kd(cfg, task, counted, STUDENT, cache=cache)
    cold_calls = calls["n"]
    got_b, c_b = _kd(cfg, task, counted, OTHER, cache=cache)
    # 128 training images / batch 32 = 4 steps x 2 epochs + 2 test batches: all computed once, then read.
    assert cold_calls == 4 * 2 + 2
    assert calls["n"] == cold_calls, "the second student ran the teacher again"
    assert cache.hits == cold_calls and cache.misses == cold_calls
    assert _same(sd_a, c_a) and _same(sd_b, c_b)
    for k in ("best_acc", "final_acc", "final_loss", "train_loss"):
        assert ref_a[k] == got_a[k] and ref_b[k] == got_b[k], k
    rows = 4 * 32
    assert cache.nbytes == stream_bytes(2, rows, 64, task.num_classes) == 4 * 8 * (2 * 128 + 64)


def test_another_seed_or_teacher_is_another_stream(setup):
    cfg, task, teacher = setup
    cache = TeacherLogitCache(2 ** 30)
    _kd(cfg, task, teacher, OTHER, seed=0, cache=cache)
    counted, calls = _counting(teacher)
    _, sd = _kd(cfg, task, counted, OTHER, seed=1, cache=cache)   # other seed: other crops and order
    assert calls["n"] == 10
    _, ref = _kd(cfg, task, teacher, OTHER, seed=1)
    assert _same(sd, ref)
    other_teacher = copy.deepcopy(teacher)
    with torch.no_grad():
        other_teacher.fc.bias.add_(1.0)
    dev = torch.device("cpu")
    keys = {stream_key(t, task, cfg, 32, s, dev, None, True) for t, s in
            ((teacher, 0), (teacher, 1), (other_teacher, 0))}
    assert len(keys) == 3
    assert stream_key(copy.deepcopy(teacher), task, cfg, 32, 0, dev, None, True) in keys
    t2 = tiny_task(seed=1)
    assert stream_key(teacher, t2, cfg, 32, 0, dev, None, True) not in keys


def test_a_stream_larger_than_the_cache_is_not_cached(setup, capsys):
    cfg, task, teacher = setup
    cache = TeacherLogitCache(1000)    # the stream needs 10,240 bytes
    counted, calls = _counting(teacher)
    _, sd = _kd(cfg, task, counted, OTHER, cache=cache)
    _kd(cfg, task, counted, OTHER, cache=cache)
    assert calls["n"] == 20 and cache.nbytes == 0
    err = capsys.readouterr().err
    assert err.count("teacher-logit cache") == 1 and "kd.logit_cache_mb" in err, err   # once, not per student


def test_from_config(setup):
    cfg, _, _ = setup
    assert TeacherLogitCache.from_config(cfg).max_bytes == cfg.kd.logit_cache_mb * 2 ** 20
    cfg0 = copy.deepcopy(cfg)
    cfg0.kd.logit_cache_mb = 0
    assert TeacherLogitCache.from_config(cfg0) is None
