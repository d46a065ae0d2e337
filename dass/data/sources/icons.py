"""Icon themes as a pool: one image per (theme, size folder, icon name); the class is the icon name
(``folder``, ``edit-copy``, ...), the group the theme.

``root`` is laid out like ``/usr/share/icons/<Theme>/...`` (freedesktop icon themes, as the icon packages
of download/download_sources.py unpack them). Each theme's tree is walked in sorted order, following
symlinks only while they stay inside the theme (a link into another theme would put that theme's
pixels into this group, and train and test would share them), skipping ``@2x`` / ``@3x`` folders,
``cursors`` and ``-symbolic`` icons. A sample is one (theme, size folder, name) file; files that
resolve to the same real file within a theme and name count once.

Classes are the names present in at least ``min_themes`` themes, minus aliases: names with a
``gtk-``, ``gnome-``, ``stock_`` or ``stock-`` prefix (legacy aliases), and of two names that resolve
to the same real file in at least half of the themes where both exist, all but the alphabetically
first. PNGs are decoded by Pillow, SVGs rendered by cairosvg at 4x the output size; the RGBA image is
composited over ``background``, then box-filtered to fit ``image_size`` (aspect kept, centred). A file
that fails to decode is skipped and counted per theme in ``meta["counts"]``; nothing is printed.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...errors import ConfigError, DataError
from .pool import Pool, file_records

DEFAULT_THEMES = ("Adwaita", "Faba", "Faenza", "Moka", "Numix", "Nuovo", "Obsidian", "Paper", "Papirus", "Tango",
                  "bloom", "breeze", "elementary", "elementary-xfce", "gartoon", "gnome", "mate", "nuoveXT2",
                  "oxygen", "sugar", "suru", "yasis")   # one primary theme per Debian icon package
ALIAS_PREFIXES = ("gtk-", "gnome-", "stock_", "stock-")
SUFFIXES = (".png", ".svg")
CANVAS = 4   # SVGs are rendered at 4x the output size, then box-filtered down
_SIZE = re.compile(r"^(\d+(x\d+)?|scalable)$")
_SYMBOLIC = re.compile(r"(-symbolic(-rtl|-ltr)?|\.symbolic)$")
_HINT = ("get icon themes with `python download/download_sources.py --group icons`, or point root at a folder "
         "laid out like /usr/share/icons")


@dataclass(frozen=True)
class IconFile:
    theme: str
    size: str      # the size folder (48x48, 32, scalable, ...), else the folder's path inside the theme
    name: str      # the file name without .png / .svg
    path: Path     # as found under root/theme
    real: str      # os.path.realpath(path)


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top + os.sep)


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or "@2x" in name or "@3x" in name or name == "cursors"


def _size_of(parts: Sequence[str]) -> str:
    return next((p for p in parts if _SIZE.match(p)), "/".join(parts) or ".")


def walk_theme(root: Path, theme: str) -> list[IconFile]:
    """Every icon file of one theme, in sorted order (module doc for what is skipped)."""
    top = root / theme
    real_top = os.path.realpath(top)
    seen: set[str] = set()
    out = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen or not _within(real_dir, real_top):
            dirnames[:] = []  # a folder reached twice (through a link) or outside the theme
            continue
        seen.add(real_dir)
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d))
        size = _size_of(Path(dirpath).relative_to(top).parts)
        for fn in sorted(filenames):
            stem, ext = os.path.splitext(fn)
            if ext.lower() not in SUFFIXES or _SYMBOLIC.search(stem):
                continue
            full = os.path.join(dirpath, fn)
            real = os.path.realpath(full)
            if _within(real, real_top) and os.path.isfile(real):
                out.append(IconFile(theme, size, stem, Path(full), real))
    return out


def _themes(root: Path, themes: Optional[Sequence[str]]) -> tuple[list[str], list[str]]:
    """``(present, missing)`` of the requested themes (default :data:`DEFAULT_THEMES`)."""
    if not root.is_dir():
        raise DataError(f"icon folder {root} does not exist; {_HINT}")
    wanted = list(DEFAULT_THEMES if themes is None else themes)
    if not wanted or not all(isinstance(t, str) and t and "/" not in t for t in wanted):
        raise ConfigError(f"icons: themes {wanted!r} must be a non-empty list of theme folder names")
    present = [t for t in wanted if (root / t).is_dir()]
    return present, [t for t in wanted if t not in present]


def index(root: str | os.PathLike, themes: Optional[Sequence[str]] = None) -> list[IconFile]:
    root = Path(root)
    return [f for t in _themes(root, themes)[0] for f in walk_theme(root, t)]


def source_files(root: str | os.PathLike, themes: Optional[Sequence[str]] = None, **_) -> list[Path]:
    """Every icon file the pool may read (for the cache's digest)."""
    return [f.path for f in index(root, themes)]


def samples(files: list[IconFile]) -> list[IconFile]:
    """One file per (theme, size, name), and one per real file within a theme and name."""
    keep, by_real, by_size = [], set(), set()
    for f in files:
        k_real, k_size = (f.theme, f.name, f.real), (f.theme, f.size, f.name)
        if k_real not in by_real and k_size not in by_size:
            by_real.add(k_real)
            by_size.add(k_size)
            keep.append(f)
    return keep


def aliases(files: list[IconFile], names: set[str], themes_of: dict[str, set[str]]) -> set[str]:
    """Names to drop: the later of two ``names`` resolving to one real file in >= half their common themes."""
    names_by_real: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in files:
        if f.name in names:
            names_by_real[(f.theme, f.real)].add(f.name)
    shared: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (theme, _), same in names_by_real.items():
        for a, b in combinations(sorted(same), 2):
            shared[(a, b)].add(theme)
    return {b for (a, b), ts in shared.items() if 2 * len(ts) >= len(themes_of[a] & themes_of[b])}


def choose_classes(files: list[IconFile], kept: list[IconFile], min_themes: int) -> tuple[list[str], dict]:
    """The class names (sorted) and what was dropped, from all files and the kept samples."""
    themes_of: dict[str, set[str]] = defaultdict(set)
    for f in kept:
        themes_of[f.name].add(f.theme)
    common = {n for n, ts in themes_of.items() if len(ts) >= min_themes}
    prefixed = {n for n in common if n.startswith(ALIAS_PREFIXES)}
    dropped = aliases(files, common - prefixed, themes_of)
    classes = sorted(common - prefixed - dropped)
    return classes, {"names": len(themes_of), "in_min_themes": len(common), "prefix_aliases": len(prefixed),
                     "aliases": sorted(dropped)}


def render_icon(path: Path, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """``size x size x 3`` uint8: the icon over ``background``, scaled to fit, centred. Raises on a bad file."""
    if path.suffix.lower() == ".svg":
        import cairosvg

        png = cairosvg.svg2png(bytestring=path.read_bytes(), output_width=CANVAS * size, output_height=CANVAS * size)
        im = Image.open(io.BytesIO(png))
    else:
        im = Image.open(path)
    with warnings.catch_warnings():  # Pillow warns about some palette PNGs; the pool prints nothing
        warnings.simplefilter("ignore")
        rgba = im.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
    w, h = flat.size
    nw, nh = max(1, round(w * size / max(w, h))), max(1, round(h * size / max(w, h)))
    canvas = Image.new("RGB", (size, size), tuple(background))
    canvas.paste(flat.resize((nw, nh), Image.BOX), ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas)


def _check_params(image_size, min_themes, background) -> tuple[int, int, int]:
    if not isinstance(image_size, int) or image_size < 4:
        raise ConfigError(f"icons: image_size is {image_size!r}; it must be an integer >= 4")
    if not isinstance(min_themes, int) or min_themes < 1:
        raise ConfigError(f"icons: min_themes is {min_themes!r}; it must be an integer >= 1")
    bg = tuple(background) if isinstance(background, (list, tuple)) else ()
    if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
        raise ConfigError(f"icons: background {background!r} must be three integers in 0..255 (R, G, B)")
    return bg  # type: ignore[return-value]


def _render_all(todo: list[IconFile], image_size: int, bg, progress: bool, counts: dict):
    images, ok = [], []
    for f in tqdm(todo, desc="icons", unit="icon", disable=not progress):
        try:
            images.append(render_icon(f.path, image_size, bg))
        except Exception:  # Pillow, cairosvg and the XML parser raise many types; all mean "cannot decode"
            counts[f.theme]["failed"] += 1
            continue
        ok.append(f)
        counts[f.theme]["rendered"] += 1
    return images, ok


def read_pool(root: str | os.PathLike, image_size: int, themes: Optional[Sequence[str]] = None, min_themes: int = 12,
              background: Sequence[int] = (255, 255, 255), progress: bool = False) -> Pool:
    """Every sample of the common icon names across the themes under ``root`` (module doc); RGB N x S x S x 3."""
    bg = _check_params(image_size, min_themes, background)
    root = Path(root)
    present, missing = _themes(root, themes)
    files = [f for t in present for f in walk_theme(root, t)]
    kept = samples(files)
    classes, dropped = choose_classes(files, kept, min_themes)
    if not classes:
        raise DataError(f"no icon name under {root} is in {min_themes} of the themes {present}; lower min_themes "
                        f"or add themes ({_HINT})")
    counts: dict[str, Counter] = {t: Counter(files=0, samples=0, rendered=0, failed=0) for t in present}
    for f in files:
        counts[f.theme]["files"] += 1
    index_of = {c: i for i, c in enumerate(classes)}
    todo = [f for f in kept if f.name in index_of]
    for f in todo:
        counts[f.theme]["samples"] += 1
    images, ok = _render_all(todo, image_size, bg, progress, counts)
    used = [t for t in present if counts[t]["rendered"]]
    meta = {"source": "icons", "params": {"themes": list(DEFAULT_THEMES if themes is None else themes),
                                          "min_themes": min_themes, "background": list(bg)},
            "image_size": image_size, "themes_used": used, "themes_missing": missing,
            "counts": {t: dict(c) for t, c in counts.items()}, "dropped": dropped,
            "files": file_records(root, [f.path for f in ok]), "versions": versions()}
    return Pool("icons", np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8),
                np.array([index_of[f.name] for f in ok], dtype=np.int64), classes,
                np.array([used.index(f.theme) for f in ok], dtype=np.int64), used, meta)


def versions() -> dict:
    import PIL

    try:
        import cairocffi
        import cairosvg
    except (ImportError, OSError):  # OSError: the cairo shared library itself is missing
        raise DataError("icons: cairosvg (and the cairo library) are needed to render SVG icons; pip install "
                        "cairosvg (requirements.txt) and apt-get install libcairo2") from None
    return {"Pillow": PIL.__version__, "cairosvg": cairosvg.__version__, "cairo": cairocffi.cairo_version_string()}
