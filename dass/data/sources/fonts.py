"""Fonts as a pool: one image per (font, character); the class is the character, the group the family.

Every ``.ttf`` / ``.otf`` under ``root`` (walked in sorted order; a copy with the same bytes as an
earlier file is skipped) whose character map covers every requested character is a candidate; its
family is the name table's typographic family (name id 16), else its family (id 1). At most
``max_per_family`` fonts of a family are kept, evenly spaced over the family's sorted paths, so that
a family with forty weights does not crowd out the others.

Rendering is the same for every glyph: white on black, on a canvas of 4x the output size, at one
font size and one baseline (NOT scaled to the glyph's box -- lower case stays smaller than upper case,
so ``o`` and ``O`` differ), centred horizontally on its advance (anchor ``ms``), with FreeType's basic
layout (raqm may or may not be installed: it must not change the pixels), then box-filtered down to
the output size. A font that fails to load or draws nothing for some character is skipped; every
skip is counted in ``meta["counts"]``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import string
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ...errors import ConfigError, DataError
from ...io import sha256_file
from .pool import Pool

DEFAULT_CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase
FONT_SUFFIXES = (".ttf", ".otf")
CANVAS = 4          # render at 4x the output size, then box-filter down
EM = 0.625          # font size as a fraction of the canvas: the same for every glyph
BASELINE = 0.68     # baseline, from the top, as a fraction of the canvas: room for ascenders and descenders
_HINT = "get fonts with `python download/download_sources.py --group fonts`, or point root at a folder of .ttf/.otf"


def source_files(root: str | os.PathLike, **_) -> list[Path]:
    """Every font file under ``root`` in sorted order (hidden folders, e.g. unpacking stages, skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"font folder {root} does not exist; {_HINT}")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if f.lower().endswith(FONT_SUFFIXES) and os.path.isfile(os.path.join(dirpath, f))]
    return out


@contextlib.contextmanager
def _quiet_fonttools():
    """fontTools logs (to stderr) about harmless quirks of real fonts; the pool prints nothing."""
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _inspect(path: Path, chars: str) -> tuple[str, str]:
    """``("ok", family)``, or ``(reason, "")`` for a font that cannot be used."""
    from fontTools.ttLib import TTFont

    try:
        with _quiet_fonttools(), TTFont(str(path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
            names = font["name"] if "name" in font else None
            family = (names.getDebugName(16) or names.getDebugName(1)) if names is not None else None
    except Exception:  # fontTools raises many types for a broken file; all mean "unusable"
        return "unreadable", ""
    if any(ord(c) not in cmap for c in chars):
        return "missing_chars", ""
    return "ok", (family or path.stem).strip()


def evenly_spaced(items: list, k: int) -> list:
    """At most ``k`` of ``items``, evenly spaced from the first to the last (all of them when few)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.round(np.linspace(0, len(items) - 1, k)).astype(int)]


def render_font(path: Path, chars: str, size: int) -> tuple[np.ndarray | None, str]:
    """``len(chars) x size x size`` uint8 glyph images, or ``(None, reason)`` when the font is unusable."""
    c = CANVAS * size
    try:
        font = ImageFont.truetype(str(path), size=round(EM * c), layout_engine=ImageFont.Layout.BASIC)
    except (OSError, ValueError):
        return None, "load_failed"
    out = np.empty((len(chars), size, size), dtype=np.uint8)
    for i, ch in enumerate(chars):
        img = Image.new("L", (c, c), 0)
        try:
            ImageDraw.Draw(img).text((c // 2, round(BASELINE * c)), ch, fill=255, font=font, anchor="ms")
        except (OSError, ValueError):
            return None, "render_failed"
        if img.getbbox() is None:
            return None, "empty_glyph"
        out[i] = np.asarray(img.resize((size, size), Image.BOX))
    return out, ""


def _check_params(chars: str, max_per_family: int, image_size: int) -> None:
    if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
        raise ConfigError(f"fonts: chars {chars!r} must be a non-empty string without repeated characters")
    if not isinstance(max_per_family, int) or max_per_family < 1:
        raise ConfigError(f"fonts: max_per_family is {max_per_family!r}; it must be an integer >= 1")
    if not isinstance(image_size, int) or image_size < 4:
        raise ConfigError(f"fonts: image_size is {image_size!r}; it must be an integer >= 4")


def _candidates(files: list[Path], chars: str, counts: Counter) -> dict[str, list[tuple[Path, str]]]:
    """Usable fonts by family: ``family -> [(path, sha256)]`` in path order."""
    by_family: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    seen: set[str] = set()
    for path in files:
        sha = sha256_file(path)
        if sha in seen:
            counts["duplicate"] += 1
            continue
        seen.add(sha)
        status, family = _inspect(path, chars)
        if status != "ok":
            counts[status] += 1
            continue
        by_family[family].append((path, sha))
    return by_family


def read_pool(root: str | os.PathLike, image_size: int, chars: str = DEFAULT_CHARS, max_per_family: int = 4,
              progress: bool = False) -> Pool:
    """Every usable font under ``root`` drawn at ``image_size`` (module doc); greyscale N x S x S."""
    _check_params(chars, max_per_family, image_size)
    root = Path(root)
    counts: Counter = Counter(files=0)
    files = source_files(root)
    counts["files"] = len(files)
    by_family = _candidates(files, chars, counts)
    chosen = []
    for family in sorted(by_family):
        keep = evenly_spaced(by_family[family], max_per_family)
        counts["over_max_per_family"] += len(by_family[family]) - len(keep)
        chosen += [(family, path, sha) for path, sha in keep]
    images, families, records = [], [], []
    for family, path, sha in tqdm(chosen, desc="fonts", unit="font", disable=not progress):
        glyphs, reason = render_font(path, chars, image_size)
        if glyphs is None:
            counts[reason] += 1
            continue
        images.append(glyphs)
        families.append(family)
        records.append({"path": path.relative_to(root).as_posix(), "sha256": sha, "family": family})
    if not images:
        raise DataError(f"no font under {root} covers all {len(chars)} characters and renders them "
                        f"({dict(counts)}); {_HINT}, or ask for fewer chars")
    group_names = sorted(set(families))
    counts["kept"] = len(images)
    meta = {"source": "fonts", "params": {"chars": chars, "max_per_family": max_per_family},
            "image_size": image_size, "files": records, "counts": dict(counts), "versions": versions(),
            "render": {"canvas": CANVAS, "em": EM, "baseline": BASELINE, "anchor": "ms", "layout": "basic",
                       "downsample": "PIL box"}}
    return Pool("fonts", np.concatenate(images), np.tile(np.arange(len(chars), dtype=np.int64), len(images)),
                list(chars), np.repeat(np.array([group_names.index(f) for f in families], dtype=np.int64), len(chars)),
                group_names, meta)


def versions() -> dict:
    import fontTools
    import PIL
    from PIL import features

    return {"Pillow": PIL.__version__, "freetype2": features.version("freetype2"), "fontTools": fontTools.version}
