"""dass.data.tasks: the authors' numpy layouts, validation on load, batched loaders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dass.config import load_config
from dass.data.tasks import (COMPLETE_MARKER, TaskData, first_per_class, known_tasks, load_task, make_loader,
                             validate_arrays)
from dass.errors import ConfigError, DataError


def cfg_for(root, *overrides):
    return load_config(None, [f"data.root={root}", "space.image_size=16", "data.crop_padding=2", *overrides])


def images(n, size=8, seed=0, grey=False):
    r = np.random.default_rng(seed)
    shape = (n, size, size) if grey else (n, size, size, 3)
    return r.integers(0, 256, shape, dtype=np.uint8)


def write_numpy_task(folder, train_x, train_y, test_x, test_y, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "train_images.npy", train_x)
    np.save(folder / "train_labels.npy", train_y)
    np.save(folder / "test_images.npy", test_x)
    np.save(folder / "test_labels.npy", test_y)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def write_tiny_imagenet(root, label_list=(4, 1, 3), labels_subdir=True):
    """6 classes x 5 images; one split (split_2) over ``label_list`` (unsorted on purpose)."""
    folder = root / "tiny_imagenet"
    (folder / "labels").mkdir(parents=True)
    (folder / "10_split").mkdir()
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(6), 5)).astype(np.int64)
    x = images(30, seed=2)
    np.save(folder / "train_images.npy", x)
    np.save(folder / ("labels/train_labels.npy" if labels_subdir else "train_labels.npy"), y)
    np.save(folder / "valid_images.npy", images(12, seed=3))
    np.save(folder / "labels" / "valid_labels.npy", np.repeat(np.arange(6), 2))
    sel = np.flatnonzero(np.isin(y, label_list))
    idx_valid, idx_train = sel[::5], np.setdiff1d(sel, sel[::5])
    np.savez(folder / "10_split" / "split_2.npz", label_list=np.array(label_list), idx_train=idx_train,
             idx_valid=idx_valid)
    return x, y, idx_train, idx_valid


# --------------------------------------------------------------------------------------------- #
# layouts
# --------------------------------------------------------------------------------------------- #

@pytest.mark.parametrize("labels_subdir", [True, False])
def test_tiny_imagenet_split_is_relabelled_like_the_authors(tmp_path, labels_subdir):
    x, y, idx_train, idx_valid = write_tiny_imagenet(tmp_path, labels_subdir=labels_subdir)
    t = load_task("tiny_imagenet-2", cfg_for(tmp_path))
    assert t.name == "tiny_imagenet-2" and t.num_classes == 3
    ll = [4, 1, 3]
    # the authors' target_transform: y -> label_list.index(y); both splits come from train_images
    np.testing.assert_array_equal(t.train_labels, [ll.index(v) for v in y[idx_train]])
    np.testing.assert_array_equal(t.test_labels, [ll.index(v) for v in y[idx_valid]])
    np.testing.assert_array_equal(t.train_images, x[idx_train])
    np.testing.assert_array_equal(t.test_images, x[idx_valid])
    assert t.train_labels.dtype == np.int64 and t.train_images.dtype == np.uint8
    assert len(t.train_labels) == 12 and len(t.test_labels) == 3


def test_tiny_imagenet_errors_name_the_split_file(tmp_path):
    write_tiny_imagenet(tmp_path)
    cfg = cfg_for(tmp_path)
    with pytest.raises(DataError, match=r"split_5\.npz does not exist.*make-splits"):
        load_task("tiny_imagenet-5", cfg)
    with pytest.raises(DataError, match="needs a split number"):
        load_task("tiny_imagenet", cfg)
    sp = tmp_path / "tiny_imagenet" / "10_split" / "split_2.npz"
    np.savez(sp, label_list=np.array([0, 1]), idx_train=np.array([0, 1]))
    with pytest.raises(DataError, match=r"split_2\.npz lacks idx_valid"):
        load_task("tiny_imagenet-2", cfg)
    np.savez(sp, label_list=np.array([0, 1]), idx_train=np.array([0, 99]), idx_valid=np.array([2]))
    with pytest.raises(DataError, match=r"split_2\.npz has idx_train entries outside \[0, 30\)"):
        load_task("tiny_imagenet-2", cfg)
    # an index whose image is of a class not in label_list
    y = np.load(tmp_path / "tiny_imagenet" / "labels" / "train_labels.npy")
    np.savez(sp, label_list=np.array([0]), idx_train=np.flatnonzero(y == 1)[:2], idx_valid=np.flatnonzero(y == 0))
    with pytest.raises(DataError, match=r"split_2\.npz: idx_train selects an image of class 1"):
        load_task("tiny_imagenet-2", cfg)
    np.savez(sp, label_list=np.array([0.5]), idx_train=np.array([0]), idx_valid=np.array([1]))
    with pytest.raises(DataError, match=r"split_2\.npz has label_list of dtype float64"):
        load_task("tiny_imagenet-2", cfg)
    sp.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"split_2\.npz is truncated or not a valid \.npz"):
        load_task("tiny_imagenet-2", cfg)


def test_cub_like_layout_is_memory_mapped(tmp_path):
    tr_y, te_y = np.arange(20) % 7, np.arange(9) % 7
    write_numpy_task(tmp_path / "cub", images(20), tr_y, images(9, seed=1), te_y)
    t = load_task("cub", cfg_for(tmp_path))
    assert isinstance(t, TaskData)
    assert isinstance(t.train_images, np.memmap) and isinstance(t.test_images, np.memmap)
    assert t.num_classes == 200                       # CUB's class count, not max(label) + 1
    assert t.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(t.train_images, images(20))
    np.testing.assert_array_equal(t.test_labels, te_y)


def test_quickdraw_greyscale_to_rgb_and_train_cut(tmp_path):
    r = np.random.default_rng(0)
    tr_y = r.permutation(np.repeat(np.arange(5), 30)).astype(np.int32)     # 30 per class, shuffled
    grey = images(150, grey=True)
    write_numpy_task(tmp_path / "quickdraw", grey, tr_y, images(10, grey=True, seed=4), np.arange(10) % 5)
    t = load_task("quickdraw", cfg_for(tmp_path, "data.quickdraw_train_per_class=20"))
    # the first 20 images of each class, in file order (the authors' argwhere(labels == c)[:20])
    keep = np.sort(np.concatenate([np.flatnonzero(tr_y == c)[:20] for c in range(5)]))
    np.testing.assert_array_equal(t.train_labels, tr_y[keep])
    assert t.train_images.shape == (100, 8, 8, 3) and t.test_images.shape == (10, 8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(t.train_images[..., c], grey[keep])
    assert np.bincount(t.train_labels).tolist() == [20] * 5
    assert t.num_classes == 345
    # the test split is not cut and stays a view of the memory-mapped file
    assert isinstance(t.test_images.base, np.memmap) or isinstance(t.test_images.base.base, np.memmap)
    t2 = load_task("quickdraw", cfg_for(tmp_path, "data.quickdraw_train_per_class=3"))
    assert np.bincount(t2.train_labels).tolist() == [3] * 5


def test_first_per_class_golden():
    y = np.array([2, 0, 2, 1, 0, 2, 0, 1])
    assert first_per_class(y, 2).tolist() == [0, 1, 2, 3, 4, 7]
    assert first_per_class(y, 1).tolist() == [0, 1, 3]


def test_generic_layout_num_classes_from_meta_or_labels(tmp_path):
    write_numpy_task(tmp_path / "mine", images(6), np.array([0, 1, 2, 0, 1, 2]), images(3), np.array([0, 1, 3]))
    cfg = cfg_for(tmp_path)
    with pytest.raises(DataError, match=r"train_labels\.npy has labels 2 that never occur in .*test_labels\.npy"):
        load_task("mine", cfg)                                   # not silently a 4-class task
    write_numpy_task(tmp_path / "mine", images(6), np.array([0, 1, 2, 3, 1, 2]), images(4), np.array([0, 1, 3, 2]))
    assert load_task("mine", cfg).num_classes == 4
    (tmp_path / "mine" / "meta.json").write_text(json.dumps({"num_classes": 6}))
    assert load_task("mine", cfg).num_classes == 6
    (tmp_path / "mine" / "meta.json").write_text(json.dumps({"num_classes": 3}))
    with pytest.raises(DataError, match=r"train_labels\.npy has labels in \[0, 3\], expected \[0, 3\)"):
        load_task("mine", cfg)
    (tmp_path / "mine" / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json is not valid JSON"):
        load_task("mine", cfg)


def test_nx_h_x_w_x_1_images_become_rgb(tmp_path):
    x = images(4, grey=True)[..., None]
    write_numpy_task(tmp_path / "g", x, np.arange(4) % 2, x, np.arange(4) % 2)
    t = load_task("g", cfg_for(tmp_path))
    assert t.train_images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(t.train_images[..., 2], x[..., 0])


# --------------------------------------------------------------------------------------------- #
# every bad input -> one-line DataError naming the file
# --------------------------------------------------------------------------------------------- #

def _good(tmp_path):
    return write_numpy_task(tmp_path / "dtd", images(10), np.arange(10) % 47, images(4), np.arange(4))


def _expect(tmp_path, pattern):
    with pytest.raises(DataError) as e:
        load_task("dtd", cfg_for(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert pattern in msg, msg
    return msg


def test_missing_file(tmp_path):
    f = _good(tmp_path)
    (f / "test_labels.npy").unlink()
    _expect(tmp_path, f"{f / 'test_labels.npy'} does not exist")


def test_missing_folder(tmp_path):
    _expect(tmp_path, f"dataset folder {tmp_path / 'dtd'} for task 'dtd' does not exist")


def test_length_mismatch(tmp_path):
    f = _good(tmp_path)
    np.save(f / "train_labels.npy", np.arange(9) % 47)
    msg = _expect(tmp_path, f"{f / 'train_labels.npy'} has 9 labels")
    assert "train_images.npy has 10 images" in msg


@pytest.mark.parametrize("labels", [np.array([0, 1, 47, 2]), np.array([0, -1, 2, 3])])
def test_label_out_of_range(tmp_path, labels):
    f = _good(tmp_path)
    np.save(f / "test_labels.npy", labels)
    _expect(tmp_path, f"{f / 'test_labels.npy'} has labels in")


def test_wrong_image_dtype(tmp_path):
    f = _good(tmp_path)
    np.save(f / "train_images.npy", images(10).astype(np.float32))
    _expect(tmp_path, f"{f / 'train_images.npy'} holds float32 images; expected uint8")


def test_wrong_label_dtype(tmp_path):
    f = _good(tmp_path)
    np.save(f / "train_labels.npy", (np.arange(10) % 47).astype(np.float64))
    _expect(tmp_path, f"{f / 'train_labels.npy'} holds float64 labels")


@pytest.mark.parametrize("shape", [(10, 8, 8, 4), (10, 64), (10, 0, 8, 3)])
def test_wrong_image_shape(tmp_path, shape):
    f = _good(tmp_path)
    np.save(f / "train_images.npy", np.zeros(shape, np.uint8))
    _expect(tmp_path, f"{f / 'train_images.npy'} ")


def test_wrong_label_shape(tmp_path):
    f = _good(tmp_path)
    np.save(f / "train_labels.npy", np.zeros((10, 2), np.int64))
    _expect(tmp_path, f"{f / 'train_labels.npy'} has label array shape (10, 2)")


def test_empty_split(tmp_path):
    f = _good(tmp_path)
    np.save(f / "test_images.npy", np.zeros((0, 8, 8, 3), np.uint8))
    _expect(tmp_path, f"{f / 'test_images.npy'} holds no images")


@pytest.mark.parametrize("keep", [10, 100, 500])
def test_truncated_npy(tmp_path, keep):
    f = _good(tmp_path)
    p = f / "train_images.npy"
    p.write_bytes(p.read_bytes()[:keep])
    _expect(tmp_path, f"{p} is truncated or not a valid .npy array")


def test_npz_under_npy_name_is_refused(tmp_path):
    f = _good(tmp_path)
    with open(f / "test_images.npy", "wb") as fh:
        np.savez(fh, a=images(4))
    _expect(tmp_path, f"{f / 'test_images.npy'} is truncated or not a valid .npy array (it is an .npz archive")


def test_pickled_object_array_is_refused(tmp_path):
    f = _good(tmp_path)
    np.save(f / "train_labels.npy", np.array([object()] * 10), allow_pickle=True)
    _expect(tmp_path, f"{f / 'train_labels.npy'} is truncated or not a valid .npy array")


def test_generated_task_missing_or_incomplete_says_make_tasks(tmp_path):
    cfg = cfg_for(tmp_path)
    with pytest.raises(DataError, match=r"synth-3 .*does not exist.*python main\.py make-tasks --config"):
        load_task("synth-3", cfg)
    # a folder with all four arrays but no completion marker = an interrupted generation
    write_numpy_task(tmp_path / "digits", images(4), np.arange(4), images(4), np.arange(4))
    with pytest.raises(DataError, match=r"digits is incomplete.*make-tasks"):
        load_task("digits", cfg)
    (tmp_path / "digits" / COMPLETE_MARKER).write_text("{}")
    assert load_task("digits", cfg).num_classes == 4


def test_validate_arrays_direct():
    x, y = validate_arrays(images(3, grey=True), np.array([0, 1, 1], np.uint8), "a.npy", "b.npy", 2)
    assert x.shape == (3, 8, 8, 3) and y.dtype == np.int64 and y.flags.writeable
    with pytest.raises(DataError, match="b.npy has labels in"):
        validate_arrays(images(3), np.array([0, 1, 2]), "a.npy", "b.npy", 2)


# --------------------------------------------------------------------------------------------- #
# loaders
# --------------------------------------------------------------------------------------------- #

def _task():
    y = np.arange(40) % 4
    return TaskData("t", images(40, size=8), y, images(10, size=8, seed=5), np.arange(10) % 4, 4)


def test_make_loader_shapes_ranges_and_resize(tmp_path):
    cfg = cfg_for(tmp_path)
    ld = make_loader(_task(), cfg, "train", batch_size=16, seed=3)
    batches = list(ld)
    assert len(batches) == 2                     # drop_last on train: 40 // 16
    x, y = batches[0]
    assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= -1.0 and x.max() <= 1.0    # mean 0.5 / std 0.5
    # evaluation loaders drop the last partial batch, as the authors' do (the paper's default) ...
    assert len(list(make_loader(_task(), cfg, "test", batch_size=4))) == 2
    assert sum(len(y) for _, y in make_loader(_task(), cfg, "test", batch_size=4)) == 8
    # ... or keep it (data.test_drop_last=false)
    assert len(list(make_loader(_task(), cfg_for(tmp_path, "data.test_drop_last=false"), "test", batch_size=4))) == 3
    with pytest.raises(ConfigError, match="fewer than one evaluation batch.*data.test_drop_last=false"):
        make_loader(_task(), cfg, "test", batch_size=16)


def test_make_loader_test_split_is_ordered_and_unaugmented(tmp_path):
    cfg = cfg_for(tmp_path, "space.image_size=8")
    t = _task()
    x, y = next(iter(make_loader(t, cfg, "test", batch_size=10)))
    expect = (torch.from_numpy(t.test_images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(x, expect)
    assert y.tolist() == t.test_labels.tolist()
    # train split without augmentation when asked
    x2, y2 = next(iter(make_loader(t, cfg, "train", batch_size=40, train=False)))
    assert y2.tolist() == t.train_labels.tolist()


def test_make_loader_determinism(tmp_path):
    cfg = cfg_for(tmp_path)
    a = make_loader(_task(), cfg, "train", batch_size=8, seed=7)
    b = make_loader(_task(), cfg, "train", batch_size=8, seed=7)
    a.set_epoch(2), b.set_epoch(2)
    xa, ya = next(iter(a))
    xb, yb = next(iter(b))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(3)
    xc, yc = next(iter(b))
    assert not torch.equal(xa, xc)
    c = make_loader(_task(), cfg, "train", batch_size=8, seed=8)
    c.set_epoch(2)
    assert not torch.equal(next(iter(c))[0], xa)


def test_make_loader_uses_crop_padding(tmp_path):
    # with padding 0 a training batch is only flipped: every image equals its source or its mirror
    cfg = cfg_for(tmp_path, "space.image_size=8", "data.crop_padding=0")
    t = _task()
    x, y = next(iter(make_loader(t, cfg, "train", batch_size=40, train=True, seed=1)))
    src = (torch.from_numpy(t.train_images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    flips = 0
    for xi in x:
        same = [j for j in range(40) if torch.allclose(xi, src[j])]
        mirrored = [j for j in range(40) if torch.allclose(xi, src[j].flip(2))]
        assert same or mirrored
        flips += bool(mirrored) and not same
    assert 5 < flips < 35
    cfg8 = cfg_for(tmp_path, "space.image_size=8", "data.crop_padding=3")
    x8, _ = next(iter(make_loader(t, cfg8, "train", batch_size=40, seed=1)))
    assert (x8 == -1.0).all(dim=1).any()         # zero (black) padding pixels show up


def test_make_loader_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        make_loader(_task(), cfg_for(tmp_path), "valid", batch_size=4)


def test_known_tasks_of_the_paper_and_demo_configs():
    assert known_tasks(load_config(None)) == ([f"tiny_imagenet-{k}" for k in range(10)]
                                              + ["cub", "dtd", "quickdraw", "stanford_cars"])
    demo = load_config(Path(__file__).resolve().parent.parent / "configs" / "demo.yaml")
    assert known_tasks(demo) == [f"synth-{k}" for k in range(10)] + ["digits"]


def test_crop_flip_with_given_draws():
    from dass.data.loader import crop_flip, draw_crop_flip, random_crop_flip

    x = torch.arange(8.0).reshape(2, 1, 2, 2)          # two 2x2 images: [[0,1],[2,3]] and [[4,5],[6,7]]
    oy, ox, fl = torch.tensor([0, 2]), torch.tensor([2, 1]), torch.tensor([False, True])
    out = crop_flip(x, 1, oy, ox, fl, fill=-1.0)
    # image 0: window rows -1..0, cols 1..2 of the padded image; image 1: rows 1..2, cols 0..1, flipped
    assert out[0, 0].tolist() == [[-1.0, -1.0], [1.0, -1.0]]
    assert out[1, 0].tolist() == [[7.0, 6.0], [-1.0, -1.0]]
    assert torch.equal(crop_flip(x, 0, oy * 0, ox * 0, fl), torch.stack([x[0], x[1].flip(2)]))
    # random_crop_flip = its draws, then crop_flip
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(random_crop_flip(x, 1, g1, fill=-1.0), crop_flip(x, 1, *draw_crop_flip(2, 1, g2), fill=-1.0))
