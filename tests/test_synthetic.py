"""dass.data.synthetic: the generated task family and the bundled digits task."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
    names = syn.generate_tasks(small_cfg(tmp_path / "a"), progress=False)
    assert names == ["synth-0", "synth-1", "digits"]
    syn.generate_tasks(small_cfg(tmp_path / "b"), progress=False)
    for n in names:
        for k in ARRAYS:
            assert (tmp_path / "a" / n / f"{k}.npy").read_bytes() == (tmp_path / "b" / n / f"{k}.npy").read_bytes()
    assert digest(tmp_path / "a" / "synth-0") == GOLDEN_SYNTH0


def test_task_does_not_depend_on_family_size_but_on_seed(tmp_path):
    a = syn.make_task(0, 1, 16, 6, 3)
    syn.generate_tasks(small_cfg(tmp_path, "data.synthetic_num_tasks=3"), progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "synth-1" / "train_images.npy"), a["train_images"])
    b = syn.make_task(1, 1, 16, 6, 3)
    assert not np.array_equal(a["train_images"], b["train_images"])


def test_generated_task_layout_and_loading(tmp_path):
    cfg = small_cfg(tmp_path)
    syn.generate_tasks(cfg, progress=False)
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
    syn.generate_tasks(cfg, progress=False)
    calls = []
    real = syn.make_task
    monkeypatch.setattr(syn, "make_task", lambda *a, **k: calls.append(a) or real(*a, **k))
    syn.generate_tasks(cfg, progress=False)
    assert calls == []
    syn.generate_tasks(small_cfg(tmp_path, "data.synthetic_test_per_class=4"), progress=False)
    assert [c[1] for c in calls] == [0, 1]
    assert np.load(tmp_path / "synth-0" / "test_labels.npy").shape[0] % 4 == 0
    syn.generate_tasks(cfg, progress=False, force=True)
    assert len(calls) == 4


def test_killed_generation_is_detected_and_redone(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    syn.generate_tasks(cfg, progress=False)
    good = digest(tmp_path / "synth-1")
    # simulate a kill while synth-1 is being rewritten: arrays half written, no marker
    (tmp_path / "synth-1" / COMPLETE_MARKER).unlink()
    p = tmp_path / "synth-1" / "test_images.npy"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="incomplete.*make-tasks"):
        load_task("synth-1", cfg)
    before = (tmp_path / "synth-0" / "train_images.npy").stat().st_mtime_ns
    syn.generate_tasks(cfg, progress=False)
    assert digest(tmp_path / "synth-1") == good
    assert (tmp_path / "synth-0" / "train_images.npy").stat().st_mtime_ns == before
    load_task("synth-1", cfg)


def test_kill_before_marker_leaves_task_incomplete(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_num_tasks=1")
    real = syn.atomic_write_text

    def boom(path, text):
        if path.name == COMPLETE_MARKER:
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(syn, "atomic_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        syn.generate_tasks(cfg, progress=False)
    with pytest.raises(DataError, match="incomplete"):
        load_task("synth-0", cfg)
    monkeypatch.setattr(syn, "atomic_write_text", real)
    syn.generate_tasks(cfg, progress=False)
    assert load_task("synth-0", cfg).num_classes >= 4


def test_digits_task(tmp_path):
    cfg = small_cfg(tmp_path, "data.synthetic_num_tasks=0")
    assert syn.generate_tasks(cfg, progress=False) == ["digits"]
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
        syn.generate_tasks(small_cfg(tmp_path, "data.digits_test_fraction=0"), progress=False)
    with pytest.raises(ConfigError, match="synthetic_train_per_class"):
        syn.generate_tasks(small_cfg(tmp_path, "data.synthetic_train_per_class=0"), progress=False)


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
# the benchmark family (v2)
# --------------------------------------------------------------------------------------------- #

def test_v2_family_is_deterministic_and_has_its_cues(tmp_path):
    cfg = small_cfg(tmp_path / "a", "data.synthetic_family=v2", "data.synthetic_min_test_images=50")
    syn.generate_tasks(cfg, progress=False)
    syn.generate_tasks(small_cfg(tmp_path / "b", "data.synthetic_family=v2", "data.synthetic_min_test_images=50"),
                       progress=False)
    assert digest(tmp_path / "a" / "synth-0") == digest(tmp_path / "b" / "synth-0")
    for k in range(2):
        t = load_task(f"synth-{k}", cfg)
        rec = syn.make_recipe_v2(0, k)
        assert set(rec["cue_weights"]) == set(syn.CUES_V2) and 2 <= rec["micro_period"] <= 4
        assert t.num_classes == rec["num_classes"] and 4 <= t.num_classes <= 12
        # at least 50 test images, balanced, the fewest per class that reach it
        per = syn.test_images_per_class(t.num_classes, 3, 50)
        assert len(t.test_labels) == per * t.num_classes >= 50 and (per - 1) * t.num_classes < 50
        assert np.bincount(t.test_labels).tolist() == [per] * t.num_classes
    # v1 is untouched by the v2 switch (its golden digest above), and the two families differ
    assert digest(tmp_path / "a" / "synth-0") != GOLDEN_SYNTH0


def test_v2_micro_texture_is_periodic_and_class_specific():
    rec = {**syn.make_recipe_v2(0, 3), "variability": 0.0, "micro_period": 3, "num_classes": 2}
    tiles = syn._micro_tiles(rec, np.random.default_rng(0))
    assert np.allclose(tiles.mean(axis=(1, 2)), 0)
    m = syn.render_micro(rec, tiles, np.array([0, 0, 1]), 12, np.random.default_rng(1))
    assert m.shape == (3, 12, 12)
    assert np.allclose(m[:, 3:, :], m[:, :-3, :]) and np.allclose(m[:, :, 3:], m[:, :, :-3])   # period 3
    # same class: the same tile up to a shift; other class: a different tile
    shifts = [np.roll(np.roll(m[0], dy, 0), dx, 1) for dy in range(3) for dx in range(3)]
    assert any(np.allclose(s, m[1]) for s in shifts) and not any(np.allclose(s, m[2]) for s in shifts)


def test_v2_bad_family_and_test_count(tmp_path):
    with pytest.raises(ConfigError, match="synthetic_min_test_images"):
        syn.check_config(small_cfg(tmp_path, "data.synthetic_family=v2", "data.synthetic_min_test_images=-1"))
    with pytest.raises(ConfigError):
        load_config(None, ["data.synthetic_family=v9"])
    with pytest.raises(ConfigError, match="v1, v2"):
        syn.make_task(0, 0, 16, 2, 2, family="v9")
    with pytest.raises(ConfigError, match="synthetic_min_x_chance"):
        syn.generate_tasks(small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_min_x_chance=-1"),
                           progress=False)


# --------------------------------------------------------------------------------------------- #
# the stratified, learnable family (v3)
# --------------------------------------------------------------------------------------------- #

def test_v3_profiles_follow_the_index():
    for k in range(16):
        rec = syn.make_recipe_v3(0, k, 20)
        low, high = syn.V3_CLASS_RANGES[k % 2]
        assert low <= rec["num_classes"] <= high
        assert set(rec["cue_weights"]) == set(syn.CUES_V2) and abs(sum(rec["cue_weights"].values()) - 1) < 1e-9
    # the dominant cue's concentration shows in its mean weight over many draws
    for cue_index, cue in enumerate(syn.CUES_V2):
        mean = np.mean([syn.make_recipe_v3(s, 2 * cue_index, 20)["cue_weights"][cue] for s in range(200)])
        others = np.mean([syn.make_recipe_v3(s, 2 * ((cue_index + 1) % 4), 20)["cue_weights"][cue] for s in range(200)])
        assert mean > 0.5 > 0.2 > others


def test_v3_attempts_are_independent_and_v2_is_untouched():
    a0 = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=0)
    a0b = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=0)
    a1 = syn.make_task(0, 5, 16, 6, 3, family="v3", attempt=1)
    assert all(np.array_equal(a0[k], a0b[k]) for k in ARRAYS)
    assert a0["meta"]["recipe"] != a1["meta"]["recipe"] and a1["meta"]["attempt"] == 1
    v2 = syn.make_task(0, 5, 16, 6, 3, family="v2")
    assert v2["meta"]["recipe"] == syn.make_recipe_v2(0, 5) and "attempt" not in v2["meta"]


def test_v3_redraws_until_the_teacher_is_learnable(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1", "data.synthetic_min_x_chance=2")
    seen = []

    def probe(cfg_, arrays):          # attempt 0 at 1.5x chance, attempt 1 at 3x
        seen.append(arrays["meta"]["attempt"])
        return (1.5 if arrays["meta"]["attempt"] == 0 else 3.0) * 100 / arrays["meta"]["num_classes"]

    monkeypatch.setattr(syn, "probe_teacher", probe)
    syn.generate_tasks(cfg, progress=False)
    meta = json.loads((tmp_path / "synth-0" / "meta.json").read_text())
    assert seen == [0, 1] and meta["attempt"] == 1
    assert meta["probe"]["x_chance"] == pytest.approx(3.0) and meta["probe"]["rejected_x_chance"] == [1.5]
    assert meta["recipe"] == syn.make_task(0, 0, 16, 6, 3, family="v3", attempt=1)["meta"]["recipe"]
    # complete with the same probe settings: not regenerated; another teacher recipe regenerates
    syn.generate_tasks(cfg, progress=False)
    assert seen == [0, 1]
    syn.generate_tasks(small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1",
                                 "data.synthetic_min_x_chance=2", "teacher.epochs=3"), progress=False)
    assert seen == [0, 1, 0, 1]


def test_v3_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1")
    monkeypatch.setattr(syn, "probe_teacher", lambda cfg_, arrays: 100 / arrays["meta"]["num_classes"])
    with pytest.raises(ConfigError, match=r"synth-0: no learnable recipe in 8 attempts.*synthetic_min_x_chance"):
        syn.generate_tasks(cfg, progress=False)
    assert not (tmp_path / "synth-0" / COMPLETE_MARKER).exists()


def test_v3_probe_is_the_teacher_build_db_trains(tmp_path):
    """The probe trains the configured teacher on CPU: its accuracy is what train_teacher reports."""
    from dass.train.engine import train_teacher

    cfg = small_cfg(tmp_path, "data.synthetic_family=v3", "data.synthetic_num_tasks=1", "teacher.epochs=1",
                    "space.stage_widths=[4,4,4,4]", "space.width_multipliers=[1.0]", "space.max_depth=1",
                    "space.min_depth=1", "teacher.batch_size=8", "data.synthetic_min_x_chance=0",
                    f"run.out_dir={tmp_path / 'runs'}")
    syn.generate_tasks(cfg, progress=False)
    meta = json.loads((tmp_path / "synth-0" / "meta.json").read_text())
    assert not (tmp_path / "runs").exists()          # a probe is not a run: it leaves no result row
    got = train_teacher(load_task("synth-0", cfg), cfg, out_dir=tmp_path / "t", progress=False)["final_acc"]
    assert meta["probe"]["teacher_acc"] == got and meta["attempt"] == 0
    # a meta-test task's teacher trains at teacher.lr_meta_test, in the probe as in build-db
    arrays = syn.make_task(0, 0, 16, 6, 3, family="v3")
    mt = load_config(None, [f"run.out_dir={tmp_path / 'runs'}", "teacher.epochs=1", "teacher.batch_size=8",
                            "teacher.lr_meta_test=0.3", "tasks.meta_test=[synth-0]", *cfg_overrides_space()])
    assert syn.probe_teacher(mt, arrays) == train_teacher(
        load_task("synth-0", cfg), mt, out_dir=tmp_path / "t2", meta_test=True, progress=False)["final_acc"]
    assert syn.probe_spec(mt, "synth-0")["meta_test"] and not syn.probe_spec(cfg, "synth-0")["meta_test"]


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
