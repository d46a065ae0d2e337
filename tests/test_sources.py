"""dass.data.sources: the Fashion-MNIST, font and icon-theme pools, the group split, subset tasks, the pool cache.

Every fixture is tiny and made here: idx files written byte by byte, fonts copied from the DejaVu files
matplotlib ships, an icon tree of a few PNG/SVG files; no Debian package or download is needed.
"""
from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dass.data import sources
from dass.data.sources import fashion_mnist, fonts, icons
from dass.data.sources.cache import pool_for
from dass.data.sources.pool import Pool, load_pool, save_pool, split_groups
from dass.data.sources.subsets import make_subset_task
from dass.data.tasks import validate_arrays
from dass.errors import ConfigError, DataError


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------ Fashion-MNIST
def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: 0x0000, type 0x08 (ubyte), ndim, big-endian dims, the data."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


def write_fashion(root: Path, n_train: int = 12, n_test: int = 6, gz: bool = False, seed: int = 0) -> dict:
    r = np.random.default_rng(seed)
    arrays = {"train": (r.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
              "test": (r.integers(0, 256, (n_test, 28, 28)), (np.arange(n_test) * 3) % 10)}
    root.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in arrays.items():
        for name, a in zip(fashion_mnist.FILES[split], (images, labels)):
            data = idx_bytes(a)
            (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_pool_plain_and_gz(tmp_path, gz):
    arrays = write_fashion(tmp_path / "fm", gz=gz)
    pool = fashion_mnist.read_pool(tmp_path / "fm", 28)
    assert pool.source == "fashion_mnist" and pool.images.shape == (18, 28, 28) and pool.images.dtype == np.uint8
    assert np.array_equal(pool.images[:12], arrays["train"][0]) and np.array_equal(pool.images[12:], arrays["test"][0])
    assert pool.labels.tolist() == arrays["train"][1].tolist() + arrays["test"][1].tolist()
    assert pool.group_names == ["train", "test"] and pool.groups.tolist() == [0] * 12 + [1] * 6
    assert pool.classes[0] == "T-shirt/top" and pool.classes[9] == "Ankle boot" and len(pool.classes) == 10
    assert [f["path"] for f in pool.meta["files"]][0] == "train-images-idx3-ubyte" + (".gz" if gz else "")
    small = fashion_mnist.read_pool(tmp_path / "fm", 14)
    expect = np.asarray(Image.fromarray(arrays["test"][0][0].astype(np.uint8)).resize((14, 14), Image.BOX))
    assert small.images.shape == (18, 14, 14) and np.array_equal(small.images[12], expect)
    assert split_groups(small, 0.3, seed=5).tolist() == [False] * 12 + [True] * 6  # the official split


def test_fashion_bad_files_are_one_line_errors(tmp_path):
    root = tmp_path / "fm"
    write_fashion(root)
    labels = root / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(b"\x00\x00\x08\x03" + good[4:])  # the images' magic number on a labels file
    with pytest.raises(DataError) as ei:
        fashion_mnist.read_pool(root, 28)
    assert str(labels) in one_line(ei) and "magic number 0x00000803" in str(ei.value)
    labels.write_bytes(good[:-2])
    with pytest.raises(DataError) as ei:
        fashion_mnist.read_pool(root, 28)
    assert str(labels) in one_line(ei) and "truncated" in str(ei.value)
    labels.unlink()
    with pytest.raises(DataError) as ei:
        fashion_mnist.read_pool(root, 28)
    msg = one_line(ei)
    assert str(labels) in msg and "download_dataset.py --name fashion_mnist" in msg
    assert "--from-folder /usr/share/datasets/fashion-mnist" in msg and "dataset-fashion-mnist" in msg
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DataError, match="not a whole gzip file"):
        fashion_mnist.read_pool(root, 28)


# -------------------------------------------------------------------------------------------- fonts
MPL_FONTS = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"


@pytest.fixture
def font_root(tmp_path):
    """Family "DejaVu Sans" (three styles), family "DejaVu Serif", a byte-identical copy and a broken file."""
    root = tmp_path / "fonts"
    for sub, name in (("sans", "DejaVuSans.ttf"), ("sans", "DejaVuSans-Bold.ttf"), ("sans", "DejaVuSans-Oblique.ttf"),
                      ("serif", "DejaVuSerif.ttf"), ("zcopy", "DejaVuSans.ttf")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(MPL_FONTS / name, root / sub / name)
    (root / "broken.otf").write_bytes(b"OTTO not a font")
    (root / "notes.txt").write_text("not a font")
    return root


def test_fonts_families_coverage_and_counts(font_root):
    pool = fonts.read_pool(font_root, 16, chars="oO0A")
    assert pool.images.shape == (4 * 4, 16, 16) and pool.classes == ["o", "O", "0", "A"]
    assert pool.group_names == ["DejaVu Sans", "DejaVu Serif"]
    assert [f["path"] for f in pool.meta["files"]] == ["sans/DejaVuSans-Bold.ttf", "sans/DejaVuSans-Oblique.ttf",
                                                       "sans/DejaVuSans.ttf", "serif/DejaVuSerif.ttf"]
    assert pool.groups.tolist() == [0] * 12 + [1] * 4 and pool.labels.tolist() == [0, 1, 2, 3] * 4
    counts = pool.meta["counts"]
    assert counts["duplicate"] == 1 and counts["unreadable"] == 1 and counts["kept"] == 4 and counts["files"] == 6
    assert set(pool.meta["versions"]) == {"Pillow", "freetype2", "fontTools"}
    # U+02CE is in DejaVu Sans but not in DejaVu Serif: the Serif font (its whole family) drops out
    lacking = fonts.read_pool(font_root, 16, chars="oO\u02ce")
    assert lacking.group_names == ["DejaVu Sans"] and lacking.meta["counts"]["missing_chars"] == 1


def test_fonts_max_per_family_is_evenly_spaced(font_root):
    pool = fonts.read_pool(font_root, 16, chars="oO", max_per_family=2)
    assert [f["path"] for f in pool.meta["files"]] == ["sans/DejaVuSans-Bold.ttf", "sans/DejaVuSans.ttf",
                                                       "serif/DejaVuSerif.ttf"]
    assert pool.meta["counts"]["over_max_per_family"] == 1
    assert fonts.evenly_spaced(list("abcde"), 3) == ["a", "c", "e"] and fonts.evenly_spaced([1], 3) == [1]


def test_fonts_case_matters_and_rendering_is_deterministic(font_root):
    a = fonts.read_pool(font_root, 16, chars="oOg", max_per_family=1)
    b = fonts.read_pool(font_root, 16, chars="oOg", max_per_family=1)
    assert a.images.tobytes() == b.images.tobytes()
    o, big_o, g = (a.images[a.classes.index(c)].astype(int) for c in "oOg")
    assert not np.array_equal(o, big_o) and big_o.sum() > 1.3 * o.sum()  # one size and baseline: O is bigger
    rows = lambda im: np.flatnonzero(im.sum(axis=1) > 0)  # noqa: E731
    assert rows(g)[-1] > rows(o)[-1] and rows(big_o)[0] < rows(o)[0]  # g descends, O rises above the x-height
    assert abs(np.flatnonzero(big_o.sum(axis=0))[[0, -1]].mean() - 7.5) <= 1.0  # horizontally centred


def test_fonts_bad_inputs(tmp_path, font_root):
    with pytest.raises(DataError) as ei:
        fonts.read_pool(tmp_path / "none", 16)
    assert "download_sources.py --group fonts" in one_line(ei)
    with pytest.raises(ConfigError, match="repeated"):
        fonts.read_pool(font_root, 16, chars="oo")
    with pytest.raises(ConfigError, match="max_per_family"):
        fonts.read_pool(font_root, 16, max_per_family=0)
    with pytest.raises(DataError, match="no font under"):
        fonts.read_pool(font_root, 16, chars="\u4e00")  # no DejaVu font has CJK


# -------------------------------------------------------------------------------------------- icons
def png_bytes(colour, size=(12, 12), alpha=255) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (*colour, alpha)).save(buf, "PNG")
    return buf.getvalue()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10" viewBox="0 0 20 10">'
       b'<rect width="20" height="10" fill="#ff0000"/></svg>')


def put(root: Path, rel: str, data: bytes | None = None, link: str | None = None) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if link is not None:
        os.symlink(link, p)
    else:
        p.write_bytes(data)


@pytest.fixture
def icon_root(tmp_path):
    """Themes T1, T2, T3. "copy" is an alias of "edit-copy" (same real file) in 2 of the 3 themes."""
    root = tmp_path / "icons"
    blue, green = png_bytes((0, 0, 255)), png_bytes((0, 255, 0))
    put(root, "T1/48x48/apps/folder.png", blue)
    put(root, "T1/scalable/apps/folder.svg", SVG)
    put(root, "T1/48x48/apps/edit-copy.png", green)
    put(root, "T1/48x48/apps/copy.png", link="edit-copy.png")
    put(root, "T1/48x48/apps/gtk-open.png", green)
    put(root, "T1/48x48/apps/folder-symbolic.png", blue)       # skipped: symbolic
    put(root, "T1/48x48@2x/apps/folder.png", blue)              # skipped: @2x
    put(root, "T1/cursors/folder.png", blue)                    # skipped: cursors
    put(root, "T1/96x96", link="48x48")                         # a linked size folder: the same files again
    put(root, "T2/places/32/folder.svg", SVG)
    put(root, "T2/places/32/edit-copy.png", green)
    put(root, "T2/places/32/copy.png", link="edit-copy.png")
    put(root, "T2/places/32/gtk-open.png", green)
    put(root, "T2/places/32/rare.png", blue)                    # in one theme only
    put(root, "T3/16x16/apps/folder.png", b"\x89PNG\r\n\x1a\n corrupt")
    put(root, "T3/16x16/apps/edit-copy.png", green)
    put(root, "T3/16x16/apps/copy.png", png_bytes((9, 9, 9)))  # a real file of its own in T3
    put(root, "T3/16x16/apps/gtk-open.png", green)
    put(root, "T3/16x16/apps/rare.png", link="../../../T1/48x48/apps/folder.png")  # leaves the theme: skipped
    return root


def test_icon_walk_skips_what_it_should(icon_root):
    files = icons.walk_theme(icon_root, "T1")
    assert sorted((f.size, f.name) for f in files) == [("48x48", "copy"), ("48x48", "edit-copy"),
                                                       ("48x48", "folder"), ("48x48", "gtk-open"),
                                                       ("scalable", "folder")]  # 96x96 is 48x48 again
    assert [(f.theme, f.name) for f in icons.walk_theme(icon_root, "T3")].count(("T3", "rare")) == 0
    assert icons.walk_theme(icon_root, "T2")[0].size == "32"


def test_icon_pool_classes_aliases_rendering(icon_root):
    pool = icons.read_pool(icon_root, 8, themes=["T1", "T2", "T3", "T9"], min_themes=2)
    assert pool.classes == ["copy", "folder"]  # edit-copy: an alias of copy; gtk-open: a prefix; rare: 1 theme
    assert pool.meta["dropped"]["aliases"] == ["edit-copy"] and pool.meta["dropped"]["prefix_aliases"] == 1
    assert pool.meta["themes_missing"] == ["T9"] and pool.group_names == ["T1", "T2", "T3"]
    assert pool.images.shape == (6, 8, 8, 3) and pool.images.dtype == np.uint8
    got = sorted(zip((pool.group_names[g] for g in pool.groups), (pool.classes[c] for c in pool.labels)))
    assert got == [("T1", "copy"), ("T1", "folder"), ("T1", "folder"), ("T2", "copy"), ("T2", "folder"),
                   ("T3", "copy")]
    assert pool.meta["counts"]["T3"]["failed"] == 1 and pool.meta["counts"]["T3"]["rendered"] == 1
    svg = pool.images[[i for i, f in enumerate(pool.meta["files"]) if f["path"].endswith(".svg")][0]]
    assert svg[4, 4].tolist() == [255, 0, 0] and svg[0, 4].tolist() == [255, 255, 255]  # red, wide: white above
    assert set(pool.meta["versions"]) == {"Pillow", "cairosvg", "cairo"}
    again = icons.read_pool(icon_root, 8, themes=["T1", "T2", "T3", "T9"], min_themes=2)
    assert again.images.tobytes() == pool.images.tobytes()


def test_icon_pool_background_and_errors(icon_root, capsys):
    half = png_bytes((0, 0, 0), alpha=0)
    put(icon_root, "T2/places/32/folder.png", half)  # a transparent PNG: the background shows
    pool = icons.read_pool(icon_root, 4, themes=["T2", "T3"], min_themes=2, background=(10, 20, 30))
    i = [k for k, f in enumerate(pool.meta["files"]) if f["path"] == "T2/places/32/folder.png"]
    assert len(i) == 1 and pool.images[i[0]].reshape(-1, 3).tolist() == [[10, 20, 30]] * 16
    assert capsys.readouterr() == ("", "")  # nothing printed
    with pytest.raises(DataError, match="no icon name"):
        icons.read_pool(icon_root, 8, themes=["T1", "T2"], min_themes=3)
    with pytest.raises(ConfigError, match="background"):
        icons.read_pool(icon_root, 8, background=(1, 2))
    with pytest.raises(DataError) as ei:
        icons.read_pool(icon_root / "nope", 8)
    assert "download_sources.py --group icons" in one_line(ei)


# -------------------------------------------------------------------------------- split and subsets
def toy_pool(n_groups: int = 8, n_classes: int = 6, per: int = 5, rgb: bool = False, source: str = "fonts") -> Pool:
    g, c, k = np.meshgrid(np.arange(n_groups), np.arange(n_classes), np.arange(per), indexing="ij")
    n = g.size
    shape = (n, 4, 4, 3) if rgb else (n, 4, 4)
    images = (np.arange(n, dtype=np.int64)[:, None] % 256).astype(np.uint8).repeat(int(np.prod(shape[1:])), 1)
    return Pool(source, images.reshape(shape), c.ravel().astype(np.int64), [f"c{i}" for i in range(n_classes)],
                g.ravel().astype(np.int64), [f"family {i}" for i in range(n_groups)],
                {"params": {}, "versions": {}, "files": [{"path": "x", "sha256": "0" * 64}]})


def test_split_groups_is_seeded_and_by_group():
    pool = toy_pool()
    a, b = split_groups(pool, 0.3, 0), split_groups(pool, 0.3, 0)
    assert np.array_equal(a, b)
    test_groups = set(pool.groups[a].tolist())
    assert len(test_groups) == 2 and not test_groups & set(pool.groups[~a].tolist())
    assert any(not np.array_equal(a, split_groups(pool, 0.3, s)) for s in range(1, 5))
    with pytest.raises(ConfigError, match="strictly between"):
        split_groups(pool, 1.0, 0)
    with pytest.raises(ConfigError, match="at least 2"):
        split_groups(toy_pool(n_groups=1), 0.3, 0)


def test_subset_task_counts_sides_and_determinism():
    pool = toy_pool()
    task = make_subset_task(pool, "fonts-3", seed=1, index=3, num_classes=(2, 4), train_per_class=(3, 8))
    again = make_subset_task(pool, "fonts-3", seed=1, index=3, num_classes=(2, 4), train_per_class=(3, 8))
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(task[key], again[key])
    m = task["meta"]
    k, t = m["num_classes"], m["train_per_class"]
    assert 2 <= k <= 4 and 3 <= t <= 8 and len(m["classes"]) == k
    assert np.bincount(task["train_labels"], minlength=k).tolist() == [t] * k
    assert sorted(set(task["test_labels"].tolist())) == list(range(k))
    assert not set(m["train_groups"]) & set(m["test_groups"]) and m["test_images"] == len(task["test_labels"])
    assert task["train_images"].shape[1:] == (4, 4)  # greyscale stays greyscale
    validate_arrays(task["train_images"], task["train_labels"], "train", "train", k)
    capped = make_subset_task(pool, "f", seed=1, index=3, num_classes=(2, 4), train_per_class=(3, 8), test_per_class=2)
    assert np.bincount(capped["test_labels"]).max() == 2
    other = make_subset_task(pool, "f", seed=1, index=4, num_classes=(2, 4), train_per_class=(3, 8))
    assert other["meta"]["classes"] != m["classes"] or other["meta"]["train_per_class"] != t


def test_subset_task_golden_values():
    """Pinned: a change of the streams, the split or the draw order changes every benchmark task."""
    m = make_subset_task(toy_pool(), "fonts-0", seed=0, index=0, num_classes=(2, 5), train_per_class=(2, 10))["meta"]
    assert (m["classes"], m["train_per_class"], m["test_groups"]) == (["c0", "c3", "c5"], 4, ["family 5", "family 6"])


def test_subset_task_too_large_is_one_line_config_error():
    pool = toy_pool(n_groups=8, n_classes=6, per=5)   # 6 train groups x 5 images = 30 train images per class
    with pytest.raises(ConfigError) as ei:
        make_subset_task(pool, "t", 0, 0, num_classes=(3, 7), train_per_class=(2, 5))
    assert "lower num_classes' upper bound to at most 6" in one_line(ei) and "task t" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        make_subset_task(pool, "t", 0, 0, num_classes=(3, 4), train_per_class=(10, 31))
    assert "at most 0" in one_line(ei) and "lower train_per_class's upper bound" in str(ei.value)
    with pytest.raises(ConfigError, match="num_classes"):
        make_subset_task(pool, "t", 0, 0, num_classes=(1, 3))
    with pytest.raises(ConfigError, match="train_per_class"):
        make_subset_task(pool, "t", 0, 0, train_per_class=(5, 2))


# ------------------------------------------------------------------------------------ pool files, cache
def test_save_load_roundtrip_and_corrupt_file(tmp_path):
    pool = toy_pool(rgb=True, source="icons")
    path = save_pool(pool, tmp_path / "p.npz")
    back = load_pool(path)
    assert back.images.tobytes() == pool.images.tobytes() and back.classes == pool.classes
    assert back.group_names == pool.group_names and back.meta == pool.meta and back.source == "icons"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError) as ei:
        load_pool(path)
    assert str(path) in one_line(ei) and "delete it" in str(ei.value)


def test_pool_cache_reused_then_rebuilt_when_a_source_file_changes(tmp_path, font_root, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return fonts.read_pool(*args, **kwargs)

    monkeypatch.setitem(sources.SOURCES, "fonts", spy)
    cache = tmp_path / "cache"
    a = pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=1)
    b = pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=1)
    assert len(calls) == 1 and a.images.tobytes() == b.images.tobytes() and len(list(cache.iterdir())) == 1
    assert b.meta["spec"]["params"] == {"chars": "oO", "max_per_family": 1}
    pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=2)   # other params: another file
    assert len(calls) == 2 and len(list(cache.iterdir())) == 2
    shutil.copy(MPL_FONTS / "DejaVuSansMono.ttf", font_root / "serif" / "DejaVuSansMono.ttf")
    c = pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=1)
    assert len(calls) == 3 and "DejaVu Sans Mono" in c.group_names
    pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=1)
    assert len(calls) == 3
    for f in cache.glob("fonts-16px-*.npz"):
        f.write_bytes(b"torn")                                                 # a torn cache is rebuilt, not an error
    d = pool_for("fonts", font_root, 16, cache, chars="oO", max_per_family=1)
    assert len(calls) == 4 and d.images.tobytes() == c.images.tobytes()
    with pytest.raises(ConfigError, match="unknown image source"):
        pool_for("mnist", font_root, 16, cache)
    with pytest.raises(ConfigError, match="unknown parameter.* min_themes for image source 'fashion_mnist'"):
        pool_for("fashion_mnist", font_root, 16, cache, min_themes=3)


def test_registry_and_default_roots(tmp_path):
    assert set(sources.SOURCES) == {"fashion_mnist", "fonts", "icons"}
    assert sources.default_root("fonts", tmp_path) == tmp_path / "sources" / "fonts"
    assert sources.default_root("icons") == Path("data/sources/icons")
    assert sources.default_root("fashion_mnist") == Path("data/fashion_mnist")
