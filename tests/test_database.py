"""The database builder end to end on a tiny configuration (docs/method.md#database)."""
import pytest
import torch
from clitools import write_toy_tasks

from dass import search
from dass.config import load_config
from dass.db import build as db
from dass.db import report
from dass.db.records import load_records, load_teacher_record, net_samples_file, task_file
from dass.errors import DassError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_toy_tasks(tmp_path_factory.mktemp("data"), 48, 24)


def tiny_cfg(data_root, out, ckpt, **over):
    o = [f"data.root={data_root}", f"db.out={out}", f"run.checkpoint_dir={ckpt}", f"run.out_dir={ckpt}/runs",
         "run.device=cpu",
         "space.stage_widths=[4,8,8,16]", "space.max_depth=2", "space.width_multipliers=[0.5,1.0]",
         "space.image_size=8", "data.crop_padding=1", "tasks.meta_train=[toy-0]", "tasks.meta_valid=[toy-1]",
         "tasks.meta_test=[toy-2]", "teacher.epochs=1", "teacher.batch_size=16", "kd.epochs=1",
         "kd.batch_size=16", "kd.eval_every=1", "teacher.eval_every=1", "db.num_students=3", "meta.n_query=2",
         "db.num_candidates=4", "predictor.dataset_samples_per_class=2", "predictor.dataset_feature_dim=8",
         # the fixture keeps these as they were before the built-in defaults became the paper's
         "db.num_students_meta_test=0", "space.last_block_full_width=false", "data.test_drop_last=false"]
    o += [f"{k}={v}" for k, v in over.items()]
    return load_config(None, o)


def _snapshot(cfg):
    out = {}
    for mode, task in db.task_plan(cfg):
        r = load_records(cfg.db.out, mode, task)
        out[task] = (r.archs, r.arch_enc, r.fmaps, r.best_acc, r.final_acc, r.final_loss, r.teacher.acc)
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for t in a:
        for x, y in zip(a[t], b[t]):
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y), t
            else:
                assert x == y, t


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("ref")
    cfg = tiny_cfg(data_root, base / "db", base / "ckpt")
    lines = []
    res = db.build(cfg, progress=False, log=lines.append)
    assert res["done"] == 9 and sorted(res["assembled"]) == ["toy-0", "toy-1", "toy-2"]
    shared = [ln for ln in lines if "teacher logits computed once" in ln]
    assert len(shared) == 3 and all("the 2 other students" in ln for ln in shared), lines
    return cfg, _snapshot(cfg)


def test_build_writes_authors_format(reference):
    cfg, snap = reference
    for mode, task in db.task_plan(cfg):
        assert task_file(cfg.db.out, mode, task).is_file()
        r = load_records(cfg.db.out, mode, task)
        assert len(r) == 3
        assert r.fmaps.shape == (3, 16, 1, 1)
        assert r.arch_enc.shape == (3, 4 * 2 * 2 + 1)
        assert r.teacher.arch == db.SearchSpace.from_config(cfg).teacher()
        assert ((r.best_acc >= 0) & (r.best_acc <= 100)).all()
        assert (r.best_acc >= r.final_acc - 1e-6).all()
    rows = report.sanity_report(cfg)
    assert [r["task"] for r in rows] == ["toy-0", "toy-1", "toy-2"]


def test_students_are_deterministic_and_distinct(reference):
    cfg, _ = reference
    a, b = db.students_for(cfg, "toy-0"), db.students_for(cfg, "toy-0")
    assert a == b and len(set(a)) == 3
    assert db.SearchSpace.from_config(cfg).teacher() not in a


def test_kill_and_resume_identical(reference, data_root, tmp_path):
    ref_cfg, ref = reference
    cfg = tiny_cfg(data_root, tmp_path / "db", ref_cfg.run.checkpoint_dir)

    class Killed(Exception):
        pass

    seen = []

    def kill_after_four(item):
        seen.append(item)
        if len(seen) == 4:
            raise Killed()

    with pytest.raises(Killed):
        db.build(cfg, progress=False, log=lambda s: None, after_item=kill_after_four)
    assert not task_file(cfg.db.out, "meta_valid", "toy-1").exists()
    res = db.build(cfg, progress=False, log=lambda s: None)
    assert res["skipped"] == 4 and res["done"] == 5
    _assert_same(_snapshot(cfg), ref)
    assert not list((tmp_path / "db").rglob("*.tmp"))


def test_shards_merge_equal_single(reference, data_root, tmp_path):
    ref_cfg, ref = reference
    cfg = tiny_cfg(data_root, tmp_path / "db", ref_cfg.run.checkpoint_dir)
    r0 = db.build(cfg, shard=0, num_shards=2, progress=False, log=lambda s: None)
    assert r0["done"] == 5 and r0["assembled"] == []
    with pytest.raises(DassError, match="incomplete"):
        db.merge(cfg, strict=True, log=lambda s: None)
    r1 = db.build(cfg, shard=1, num_shards=2, progress=False, log=lambda s: None)
    assert r1["done"] == 4
    db.merge(cfg, log=lambda s: None)
    _assert_same(_snapshot(cfg), ref)


def test_corrupt_and_mismatched_items_are_redone(reference, data_root, tmp_path):
    ref_cfg, ref = reference
    cfg = tiny_cfg(data_root, tmp_path / "db", ref_cfg.run.checkpoint_dir)
    db.build(cfg, progress=False, log=lambda s: None)
    items = db.work_items(cfg)
    db.item_file(cfg, items[0]).write_bytes(b"truncated")
    rec = torch.load(db.item_file(cfg, items[1]), weights_only=True)
    rec["fingerprint"] = "from-another-config"
    torch.save(rec, db.item_file(cfg, items[1]))
    res = db.build(cfg, progress=False, log=lambda s: None)
    assert res["done"] == 2
    _assert_same(_snapshot(cfg), ref)
    # a changed KD recipe invalidates every stored item
    cfg2 = tiny_cfg(data_root, tmp_path / "db", ref_cfg.run.checkpoint_dir, **{"kd.lr": 0.01})
    assert all(db.load_item(cfg2, it) is None for it in db.work_items(cfg2))


def test_candidates(reference, tmp_path):
    cfg, _ = reference
    paths = search.build_candidates(cfg, progress=False, log=lambda s: None)
    rec = search.load_candidates(paths[0], "toy-2")
    assert len(rec) == 4 and torch.isnan(rec.best_acc).all()
    assert rec.teacher is not None and rec.fmaps.shape == (4, 16, 1, 1)
    ns = torch.load(search.search_root(cfg) / "net_samples.pt", weights_only=True)
    assert len(ns) == 4 and len(ns[0]) == 4
    # also where the authors' tools look: the nested pool inputs, the teacher record, net_info/net_samples.pt
    d = torch.load(paths[0], weights_only=True)
    assert torch.equal(torch.stack(d["pred_inp"]["arch_enc"]), rec.arch_enc)
    assert d["arch_info"]["channel_widths"] == [[list(w) for w in a.widths] for a in rec.archs]
    t = load_teacher_record(cfg.db.out, "meta_test", "toy-2")
    assert t.acc == rec.teacher.acc and torch.equal(t.fmap, rec.teacher.fmap)
    assert torch.load(net_samples_file(cfg.db.out), weights_only=True) == ns


def test_candidates_keep_a_foreign_net_samples(reference, tmp_path):
    cfg, _ = reference
    cfg = tiny_cfg(cfg.data.root, tmp_path / "db2", cfg.run.checkpoint_dir)
    foreign = net_samples_file(cfg.db.out)
    foreign.parent.mkdir(parents=True)
    torch.save([(1, 2, [1, 1, 1, 1], [[4], [8], [8], [16]])], foreign)
    before = foreign.read_bytes()
    with pytest.raises(DassError, match="lists other candidates .* not overwritten"):
        search.build_candidates(cfg, progress=False, log=lambda s: None)
    assert foreign.read_bytes() == before and not list(search.search_root(cfg).glob("toy-*.pt"))


def test_bad_shard_arguments(reference):
    cfg, _ = reference
    with pytest.raises(DassError, match="--shard 2"):
        db.build(cfg, shard=2, num_shards=2, progress=False)


def test_fingerprint_ignores_speed_settings_only(tmp_path):
    """Records do not depend on the logit cache or the embedding processes: changing them must not
    make a build redo its students; a recipe change must."""
    from dass.space import Arch

    arch = Arch([1, 1, 1, 1], [[2], [4], [4], [8]])
    base = db.fingerprint(tiny_cfg(tmp_path, tmp_path / "db", tmp_path / "ck"), "toy-0", 0, arch)
    speed = tiny_cfg(tmp_path, tmp_path / "db", tmp_path / "ck", **{"kd.logit_cache_mb": 0, "embed.workers": 3})
    assert db.fingerprint(speed, "toy-0", 0, arch) == base
    for key, value in (("kd.lr", 0.123), ("embed.noise_seed", 5), ("kd.epochs", 2), ("train.amp", "bf16"),
                       ("train.channels_last", True), ("train.cudnn_benchmark", True)):
        other = tiny_cfg(tmp_path, tmp_path / "db", tmp_path / "ck", **{key: value})
        assert db.fingerprint(other, "toy-0", 0, arch) != base, key


def test_records_are_the_same_without_the_logit_cache(data_root, reference, tmp_path):
    ref_cfg, ref = reference
    cfg = tiny_cfg(data_root, tmp_path / "db", ref_cfg.run.checkpoint_dir, **{"kd.logit_cache_mb": 0})
    lines = []
    db.build(cfg, progress=False, log=lines.append)
    assert not any("teacher logits computed once" in ln for ln in lines)
    _assert_same(_snapshot(cfg), ref)


# --------------------------------------------------------------------------------------------- #
# the benchmark's database: labels over several KD seeds, shared students, the family report
# --------------------------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def multi_seed(data_root, tmp_path_factory, reference):
    base = tmp_path_factory.mktemp("multi")
    cfg = tiny_cfg(data_root, base / "db", base / "ckpt", **{"db.kd_seeds": "[0,1]", "db.shared_students": 2,
                                                           "db.num_students_meta_test": 4})
    res = db.build(cfg, progress=False, log=lambda s: None)
    assert res["done"] == 3 + 3 + 4
    return cfg


def test_multi_seed_labels_are_the_mean_and_each_seed_is_kept(multi_seed, reference):
    cfg = multi_seed
    ref_cfg, ref = reference
    r = load_records(cfg.db.out, "meta_test", "toy-2")
    assert len(r) == 4 and r.kd_seeds == [0, 1] and r.seed_best_acc.shape == (2, 4)
    assert torch.allclose(r.best_acc, r.seed_best_acc.mean(0)) and torch.allclose(r.final_acc, r.seed_final_acc.mean(0))
    # seed 0 is the single-seed build's kd_seed: the same student gives the same accuracy
    r0 = load_records(cfg.db.out, "meta_train", "toy-0")
    single = load_records(ref_cfg.db.out, "meta_train", "toy-0")
    for i, a in enumerate(r0.archs):
        if a in single.archs:
            assert r0.seed_best_acc[0, i] == single.best_acc[single.archs.index(a)]
    sub = r.subset([3, 1])
    assert torch.equal(sub.seed_best_acc, r.seed_best_acc[:, [3, 1]])


def test_shared_students_come_first_on_every_task(multi_seed):
    cfg = multi_seed
    shared = db.shared_students(cfg)
    for mode, task in db.task_plan(cfg):
        s = db.students_for(cfg, task, mode)
        assert s[:2] == shared and len(set(s)) == len(s)
    assert len(db.students_for(cfg, "toy-2", "meta_test")) == 4


def test_report_has_ceiling_and_family_summary(multi_seed):
    cfg = multi_seed
    from dass.stats import noise_ceiling

    rows = report.sanity_report(cfg)
    classes = {"toy-0": 3, "toy-1": 4, "toy-2": 3}
    for r, (mode, task) in zip(rows, db.task_plan(cfg)):
        want = noise_ceiling(load_records(cfg.db.out, mode, task).seed_best_acc.numpy())
        if r["acc_std"] == 0:       # every student equal (1 KD epoch on a toy task): no ranking to measure
            assert r["ceiling"] != r["ceiling"]
        else:
            assert r["ceiling"] == round(want["ceiling"], 3) and 0 <= r["ceiling"] <= 1
        assert r["x_chance"] == pytest.approx(r["teacher_acc"] / (100 / classes[task]), abs=0.01)
    fam = report.family_summary(cfg, rows)
    ranked = sum(r["acc_std"] > 0 for r in rows)         # a task with constant accuracies has no ranking
    assert fam["tasks"] == 3 and fam["tau"]["pairs"] == ranked * (ranked - 1) // 2
    assert fam["tau"]["shared_students"] == 2 and -1 <= fam["tau"]["min"] <= fam["tau"]["max"] <= 1
    assert set(fam["low_macs"]) <= {"toy-0", "toy-1", "toy-2"}
    assert "task family" in report.format_family(fam)


def test_multi_seed_items_are_not_mixed_with_single_seed_ones(reference, data_root):
    cfg, _ = reference
    other = tiny_cfg(data_root, cfg.db.out, cfg.run.checkpoint_dir, **{"db.kd_seeds": "[0,1]"})
    item = db.work_items(cfg)[0]
    assert db.load_item(cfg, item) is not None and db.load_item(other, item) is None
    changed = tiny_cfg(data_root, cfg.db.out, cfg.run.checkpoint_dir, **{"data.synthetic_train_per_class": 7})
    assert db.load_item(changed, item) is None      # how the tasks were made is part of an item's identity


def test_fingerprint_unchanged_while_last_block_full_width_is_off():
    """A pinned fingerprint: a change invalidates every build's finished items, so it changes only on
    purpose (last: data.test_drop_last joined the data section, which changes the recorded accuracies, and the
    informationless embed.pad left; before: the data and precision sections joined it). Turning
    last_block_full_width on changes it."""
    from dass.space import Arch

    arch = Arch([1, 1, 1, 1], [[32], [64], [128], [256]])
    off = load_config(None, ["space.last_block_full_width=false"])
    assert db.fingerprint(off, "cub", 3, arch) == "6e6fb2bb9452aea19442"
    assert db.fingerprint(load_config(None, []), "cub", 3, arch) != "6e6fb2bb9452aea19442"   # the default: on
    every_image = load_config(None, ["space.last_block_full_width=false", "data.test_drop_last=false"])
    assert db.fingerprint(every_image, "cub", 3, arch) != "6e6fb2bb9452aea19442"
