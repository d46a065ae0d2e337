"""dass.data.synthetic: the generated task family and the bundled digits task."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dass.data.generate as gen
import dass.data.synthetic as syn
from dass.cli import main
from dass.config import load_config
from dass.data.tasks import COMPLETE_MARKER, load_task, make_loader
from dass.errors import ConfigError, DataError

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def small_cfg(root, *overrides):
    return load_config(None, [f"data.root={root}", "space.image_size=16", "data.synthetic_num_tasks=2",
                              "data.synthetic_train_per_class=6", "data.synthetic_test_per_class=3", *overrides])


def digest(folder):
    h = hashlib.sha256()
    for k in ARRAYS:
        h.update((folder / f"{k}.npy").read_bytes())
    return h.hexdigest()


# sha256 over synth-0's four .npy files (seed 0, 16 px, 6 train / 3 test per class). It pins the
# generator *and* numpy's PCG64 streams; it changes only when the family is changed on purpose
# (then bump GENERATOR_VERSION so existing folders are regenerated).
GOLDEN_SYNTH0 = "1436b4c1dc839cdee283e90bd3f03d10a6c60ed3397c23ba181310ff436d8355"


def test_generation_is_deterministic_and_golden(tmp_path):
    names = gen.generate_tasks(small_cfg(tmp_path / "a"), progress=False)
    assert names == ["synth-0", "synth-1", "digits"]
    gen.generate_tasks(small_cfg(tmp_path / "b"), progress=False)
    for n in names:
        for k in ARRAYS:
            assert (tmp_path / "a" / n / f"{k}.npy").read_bytes() == (tmp_path / "b" / n / f"{k}.npy").read_bytes()
    assert digest(tmp_path / "a" / "synth-0") == GOLDEN_SYNTH0


def test_task_does_not_depend_on_family_size_but_on_seed(tmp_path):
    a = syn.make_task(0, 1, 16, 6, 3)
    gen.generate_tasks(small_cfg(tmp_path, "data.synthetic_num_tasks=3"), progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "synth-1" / "train_images.npy"), a["train_images"])
    b = syn.make_task(1, 1, 16, 6, 3)
    assert not np.array_equal(a["train_images"], b["train_images"])


def test_generated_task_layout_and_loading(tmp_path):
    cfg = small_cfg(tmp_path)
    gen.generate_tasks(cfg, progress=False)
    t = load_task("synth-0", cfg)
    k = t.num_classes
    assert 4 <= k <= 10
    assert t.train_images.shape == (6 * k, 16, 16, 3) and t.test_images.shape == (3 * k, 16, 16, 3)
    assert t.train_images.dtype == np.uint8 and isinstance(t.train_images, np.memmap)
    assert np.bincount(t.train_labels).tolist() == [6] * k and np.bincount(t.test_labels).tolist() == [3] * k
    assert t.train_images.std() > 10                  # not blank images
    # one code path: the loader serves a generated task like any dataset
    x, y = next(iter(make_loader(t, cfg, "train", batch_size=8)))
    assert x.shape == (8, 3, 16, 16) and y.max() < k


def test_recipes_differ_across_the_family():
    recipes = [syn.make_recipe(0, i) for i in range(12)]
    assert len({r["num_classes"] for r in recipes}) >= 4
    assert all(4 <= r["num_classes"] <= 10 for r in recipes)
    main_cue = {max(r["cue_weights"], key=r["cue_weights"].get) for r in recipes}
    assert main_cue == {"shape", "colour", "texture"}
    ratios = [r["variability"] / r["separation"] for r in recipes]
    assert max(ratios) > 2 * min(ratios)


def test_classes_are_separable_but_not_trivially():
    # within-class images are closer to their own class mean colour than a shuffled labelling
    # gives, i.e. labels carry signal; but a class-mean template does not solve the task.
    t = syn.make_task(0, 0, 16, 40, 20)
    x = t["train_images"].astype(np.float64).reshape(len(t["train_images"]), -1)
    y = t["train_labels"]
    means = np.stack([x[y == c].mean(0) for c in range(y.max() + 1)])
    xt = t["test_images"].astype(np.float64).reshape(len(t["test_images"]), -1)
    pred = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    acc = (pred == t["test_labels"]).mean()
    assert 1.0 / (y.max() + 1) < acc < 0.95


def test_skips_complete_tasks_and_regenerates_on_other_sizes(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    gen.generate_tasks(cfg, progress=False)
    calls = []
    real = syn.make_task
    monkeypatch.setattr(syn, "make_task", lambda *a, **k: calls.append(a) or real(*a, **k))
    gen.generate_tasks(cfg, progress=False)
    assert calls == []
    gen.generate_tasks(small_cfg(tmp_path, "data.synthetic_test_per_class=4"), progress=False)
    assert [c[1] for c in calls] == [0, 1]
    assert np.load(tmp_path / "synth-0" / "test_labels.npy").shape[0] % 4 == 0
    gen.generate_tasks(cfg, progress=False, force=True)
    assert len(calls) == 4


def test_killed_generation_is_detected_and_redone(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    gen.generate_tasks(cfg, progress=False)
    good = digest(tmp_path / "synth-1")
    # simulate a kill while synth-1 is being rewritten: arrays half written, no marker
    (tmp_path / "synth-1" / COMPLETE_MARKER).unlink()
    p = tmp_path / "synth-1" / "test_images.npy"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="incomplete.*make-tasks"):
        load_task("synth-1", cfg)
    before = (tmp_path / "synth-0" / "train_images.npy").stat().st_mtime_ns
    gen.generate_tasks(cfg, progress=False)
    assert digest(tmp_path / "synth-1") == good
    assert (tmp_path / "synth-0" / "train_images.npy").stat().st_mtime_ns == before
    load_task("synth-1", cfg)


def test_kill_before_marker_leaves_task_incomplete(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_num_tasks=1")
    import dass.data.tasks as tasks_mod

    real = tasks_mod.atomic_write_text

    def boom(path, text):
        if path.name == COMPLETE_MARKER:
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(tasks_mod, "atomic_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_tasks(cfg, progress=False)
    with pytest.raises(DataError, match="incomplete"):
        load_task("synth-0", cfg)
    monkeypatch.setattr(tasks_mod, "atomic_write_text", real)
    gen.generate_tasks(cfg, progress=False)
    assert load_task("synth-0", cfg).num_classes >= 4


def test_digits_task(tmp_path):
    cfg = small_cfg(tmp_path, "data.synthetic_num_tasks=0")
    assert gen.generate_tasks(cfg, progress=False) == ["digits"]
    t = load_task("digits", cfg)
    assert t.num_classes == 10
    assert len(t.train_labels) + len(t.test_labels) == 1797
    assert t.train_images.shape[1:] == (16, 16, 3) and t.test_images.dtype == np.uint8
    np.testing.assert_array_equal(t.train_images[..., 0], t.train_images[..., 2])      # greyscale -> RGB
    # stratified: each class's test share is round(0.3 * its count)
    counts = np.bincount(np.concatenate([t.train_labels, t.test_labels]))
    assert np.bincount(t.test_labels).tolist() == [int(round(0.3 * c)) for c in counts]
    assert t.train_images.max() == 255 and t.train_images.min() == 0
    # deterministic, and the split follows the seed
    again = syn.make_digits(16, 0)
    np.testing.assert_array_equal(again["test_labels"], t.test_labels)
    other = syn.make_digits(16, 1)
    assert not np.array_equal(other["test_labels"], t.test_labels)
    # 8x8 -> 8x8 keeps the original pixels (scaled 0..16 -> 0..255)
    from sklearn.datasets import load_digits
    native = syn.make_digits(8, 0)
    d = load_digits()
    allx = np.concatenate([native["train_images"], native["test_images"]])[..., 0].astype(np.int64)
    assert sorted(allx.reshape(len(allx), -1).sum(1).tolist()) == sorted(
        np.rint(d.images * 255 / 16).reshape(1797, -1).sum(1).astype(np.int64).tolist())


def test_resize_bilinear_matches_torch():
    x = np.random.default_rng(0).random((2, 3, 5, 5))
    for size in (4, 11, 16):
        ours = syn.resize_bilinear(x, size)
        ref = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(ours, ref.numpy(), atol=1e-12)


def test_bad_config_values(tmp_path):
    with pytest.raises(ConfigError, match="digits_test_fraction"):
        gen.generate_tasks(small_cfg(tmp_path, "data.digits_test_fraction=0"), progress=False)
    with pytest.raises(ConfigError, match="synthetic_train_per_class"):
        gen.generate_tasks(small_cfg(tmp_path, "data.synthetic_train_per_class=0"), progress=False)


def test_make_tasks_cli(tmp_path, capsys):
    args = ["make-tasks", f"data.root={tmp_path}", "space.image_size=16", "data.synthetic_num_tasks=1",
            "data.synthetic_train_per_class=4", "data.synthetic_test_per_class=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"2 tasks at 16x16 in {tmp_path.resolve()}" in out and "task=synth-0" in out and "task=digits" in out
    assert (tmp_path / "synth-0" / COMPLETE_MARKER).is_file()
    assert main(args + ["--out", str(tmp_path / "elsewhere"), "--quiet"]) == 0
    assert (tmp_path / "elsewhere" / "digits" / "meta.json").is_file()


# --------------------------------------------------------------------------------------------- #
# bad settings of the family
# --------------------------------------------------------------------------------------------- #

def test_bad_family_and_test_count(tmp_path):
    with pytest.raises(ConfigError, match="synthetic_min_test_images"):
        syn.check_config(small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_min_test_images=-1"))
    with pytest.raises(ConfigError):
        load_config(None, ["data.synthetic_family=v2"])      # the old family is gone
    with pytest.raises(ConfigError, match="v1, v3"):
        syn.make_task(0, 0, 16, 2, 2, family="v9")
    with pytest.raises(ConfigError, match="synthetic_min_x_chance"):
        gen.generate_tasks(small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_min_x_chance=-1"),
                           progress=False)


# --------------------------------------------------------------------------------------------- #
# the stratified, learnable family (v3)
# --------------------------------------------------------------------------------------------- #

def test_v3_profiles_follow_the_index():
    for k in range(16):
        rec = syn.make_recipe_v3(0, k, 20)
        low, high = syn.V3_CLASS_RANGES[k % 2]
        assert low <= rec["num_classes"] <= high
        assert set(rec["cue_weights"]) == set(syn.FOUR_CUES) and abs(sum(rec["cue_weights"].values()) - 1) < 1e-9
    # the dominant cue's concentration shows in its mean weight over many draws
    for cue_index, cue in enumerate(syn.FOUR_CUES):
        mean = np.mean([syn.make_recipe_v3(s, 2 * cue_index, 20)["cue_weights"][cue] for s in range(200)])
        others = np.mean([syn.make_recipe_v3(s, 2 * ((cue_index + 1) % 4), 20)["cue_weights"][cue] for s in range(200)])
        assert mean > 0.5 > 0.2 > others


def test_v3_attempts_are_independent():
    a0 = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=0)
    a0b = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=0)
    a1 = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=1)
    assert all(np.array_equal(a0[k], a0b[k]) for k in ARRAYS)
    assert a0["meta"]["recipe"] != a1["meta"]["recipe"] and a1["meta"]["attempt"] == 1


def test_v3_redraws_until_the_teacher_is_learnable(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1", "data.synthetic_min_x_chance=2")
    seen = []

    def probe(cfg_, arrays):          # attempt 0 at 1.5x chance, attempt 1 at 3x
        seen.append(arrays["meta"]["attempt"])
        return (1.5 if arrays["meta"]["attempt"] == 0 else 3.0) * 100 / arrays["meta"]["num_classes"]

    gen.generate_tasks(cfg, progress=False, probe=probe)
    meta = json.loads((tmp_path / "synth-0" / "meta.json").read_text())
    assert seen == [0, 1] and meta["attempt"] == 1
    assert meta["probe"]["x_chance"] == pytest.approx(3.0) and meta["probe"]["rejected_x_chance"] == [1.5]
    assert meta["recipe"] == syn.make_task(0, 0, 16, 6, 3, family="v3", attempt=1)["meta"]["recipe"]
    # complete with the same probe settings: not regenerated; another teacher recipe regenerates
    gen.generate_tasks(cfg, progress=False, probe=probe)
    assert seen == [0, 1]
    gen.generate_tasks(small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1",
                                 "data.synthetic_min_x_chance=2", "teacher.epochs=3"), progress=False, probe=probe)
    assert seen == [0, 1, 0, 1]


def test_v3_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1")
    chance = lambda cfg_, arrays: 100 / arrays["meta"]["num_classes"]  # noqa: E731
    with pytest.raises(ConfigError, match=r"synth-0: no learnable recipe in 8 attempts.*synthetic_min_x_chance"):
        gen.generate_tasks(cfg, progress=False, probe=chance)
    with pytest.raises(ConfigError, match="needs a probe"):
        gen.generate_tasks(cfg, progress=False)
    assert not (tmp_path / "synth-0" / COMPLETE_MARKER).exists()


def test_v3_probe_is_the_teacher_build_db_trains(tmp_path):
    """The probe trains the configured teacher on CPU: its accuracy is what train_teacher reports."""
    from dass.train.engine import train_teacher
    from dass.train.teachers import probe_teacher_accuracy

    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1", "teacher.epochs=1",
                    "space.stage_widths=[4,4,4,4]", "space.width_multipliers=[1.0]", "space.max_depth=1",
                    "space.min_depth=1", "teacher.batch_size=8", "data.synthetic_min_x_chance=0",
                    f"run.out_dir={tmp_path / 'runs'}")
    gen.generate_tasks(cfg, progress=False, probe=probe_teacher_accuracy)
    meta = json.loads((tmp_path / "synth-0" / "meta.json").read_text())
    assert not (tmp_path / "runs").exists()          # a probe is not a run: it leaves no result row
    got = train_teacher(load_task("synth-0", cfg), cfg, out_dir=tmp_path / "t", progress=False)["final_acc"]
    assert meta["probe"]["teacher_acc"] == got and meta["attempt"] == 0
    # a meta-test task's teacher trains at teacher.lr_meta_test, in the probe as in build-db
    arrays = syn.make_task(0, 0, 16, 6, 3, family="v3")
    mt = load_config(None, [f"run.out_dir={tmp_path / 'runs'}", "teacher.epochs=1", "teacher.batch_size=8",
                            "teacher.lr_meta_test=0.3", "tasks.meta_test=[synth-0]", *cfg_overrides_space()])
    assert probe_teacher_accuracy(mt, arrays) == train_teacher(
        load_task("synth-0", cfg), mt, out_dir=tmp_path / "t2", meta_test=True, progress=False)["final_acc"]
    assert gen.probe_spec(mt, "synth-0")["meta_test"] and not gen.probe_spec(cfg, "synth-0")["meta_test"]


def cfg_overrides_space():
    return ["space.image_size=16", "space.stage_widths=[4,4,4,4]", "space.width_multipliers=[1.0]",
            "space.max_depth=1", "space.min_depth=1"]


def test_v3_train_size_follows_the_recipe():
    for k in range(6):
        a = syn.make_task(0, k, 16, 40, 3, family="v3")
        frac = a["meta"]["recipe"]["train_fraction"]
        assert syn.V3_TRAIN_FRACTION[0] <= frac <= syn.V3_TRAIN_FRACTION[1]
        per = a["meta"]["train_per_class"]
        assert per == round(40 * frac) and np.bincount(a["train_labels"]).tolist() == [per] * a["meta"]["num_classes"]
