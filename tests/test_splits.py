"""dass.data.splits: Tiny ImageNet class splits in the authors' format."""
from __future__ import annotations

import numpy as np
import pytest

from dass.cli import main
from dass.config import load_config
from dass.data.splits import choose_classes, make_tiny_imagenet_splits
from dass.data.tasks import load_task
from dass.errors import DataError


def fake_tiny_imagenet(root, num_classes=20, per_class=10, labels_subdir=True):
    folder = root / "tiny_imagenet"
    (folder / "labels").mkdir(parents=True)
    y = np.repeat(np.arange(num_classes), per_class).astype(np.int64)   # class-contiguous, like the release
    np.save(folder / ("labels/train_labels.npy" if labels_subdir else "train_labels.npy"), y)
    r = np.random.default_rng(0)
    np.save(folder / "train_images.npy", r.integers(0, 256, (len(y), 4, 4, 3), dtype=np.uint8))
    return folder, y


# split 0's classes for seed 3 on the 20-class fake (pins the seeding scheme; changes only on purpose)
GOLDEN_SEED3_SPLIT0 = [0, 1, 4, 7, 9, 10, 16, 19]


def read(path):
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["idx_train", "idx_valid", "label_list"]
        return {k: z[k] for k in z.files}


def test_format_and_invariants(tmp_path):
    folder, y = fake_tiny_imagenet(tmp_path)
    paths = make_tiny_imagenet_splits(folder, num_splits=5, classes_per_split=8, seed=0)
    assert paths == [folder / "5_split" / f"split_{k}.npz" for k in range(5)]
    uses = np.zeros(20, int)
    for p in paths:
        s = read(p)
        for k in s:
            assert s[k].dtype == np.int64 and s[k].ndim == 1
        ll, tr, va = s["label_list"], s["idx_train"], s["idx_valid"]
        assert len(ll) == 8 and np.all(np.diff(ll) > 0)                  # sorted, no repeats
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
        assert not set(tr) & set(va)                                       # disjoint within the split
        np.testing.assert_array_equal(np.union1d(tr, va), np.flatnonzero(np.isin(y, ll)))
        assert np.bincount(y[va], minlength=20)[ll].tolist() == [1] * 8    # 10% of 10 per class
        uses[ll] += 1
    # 5 x 8 = 40 slots over 20 classes: every class in exactly two splits
    assert uses.tolist() == [2] * 20


def test_paper_numbers_balance():
    subsets = choose_classes(np.arange(200), 10, 40, np.random.default_rng(0))
    first, second = np.concatenate(subsets[:5]), np.concatenate(subsets[5:])
    assert sorted(first.tolist()) == list(range(200)) == sorted(second.tolist())


def test_determinism_and_seed(tmp_path):
    folder, _ = fake_tiny_imagenet(tmp_path)
    a = [read(p) for p in make_tiny_imagenet_splits(folder, 5, 8, seed=3)]
    b = [read(p) for p in make_tiny_imagenet_splits(folder, 5, 8, seed=3, force=True)]
    for sa, sb in zip(a, b):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    c = [read(p) for p in make_tiny_imagenet_splits(folder, 5, 8, seed=4, force=True)]
    assert any(not np.array_equal(sa["label_list"], sc["label_list"]) for sa, sc in zip(a, c))
    # golden: the first split's classes for seed 3
    assert a[0]["label_list"].tolist() == GOLDEN_SEED3_SPLIT0


def test_loads_through_load_task(tmp_path):
    folder, y = fake_tiny_imagenet(tmp_path, labels_subdir=False)
    make_tiny_imagenet_splits(folder, seed=1, num_splits=10, classes_per_split=6)
    cfg = load_config(None, [f"data.root={tmp_path}"])
    t = load_task("tiny_imagenet-7", cfg)
    s = read(folder / "10_split" / "split_7.npz")
    assert t.num_classes == 6
    np.testing.assert_array_equal(s["label_list"][t.train_labels], y[s["idx_train"]])
    np.testing.assert_array_equal(s["label_list"][t.test_labels], y[s["idx_valid"]])


def test_refuses_to_overwrite_and_bad_arguments(tmp_path):
    folder, _ = fake_tiny_imagenet(tmp_path)
    make_tiny_imagenet_splits(folder, 2, 4)
    with pytest.raises(DataError, match=r"split_0\.npz already exists; pass --force"):
        make_tiny_imagenet_splits(folder, 2, 4)
    with pytest.raises(DataError, match="has 20 classes, fewer than the 40"):
        make_tiny_imagenet_splits(folder, 2, 40, force=True)
    with pytest.raises(DataError, match="valid_fraction"):
        make_tiny_imagenet_splits(folder, 2, 4, valid_fraction=1.0, force=True)
    with pytest.raises(DataError, match=r"train_labels\.npy does not exist"):
        make_tiny_imagenet_splits(tmp_path / "nowhere")


def test_cli(tmp_path, capsys):
    folder, _ = fake_tiny_imagenet(tmp_path)
    assert main(["make-splits", "--root", str(folder), "--seed", "2", "--num-splits", "3",
                 "--classes-per-split", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("5 classes, 45 train / 5 valid images") == 3
    assert main(["make-splits", "--root", str(folder), "--num-splits", "3", "--classes-per-split", "5"]) == 2
    assert "already exists" in capsys.readouterr().err
    # default root: <data.root>/tiny_imagenet, 10 splits of 40 need 40 classes
    assert main(["make-splits", f"data.root={tmp_path}"]) == 2
    assert "fewer than the 40" in capsys.readouterr().err
