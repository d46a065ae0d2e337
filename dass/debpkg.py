"""Unpacking one folder of a Debian package (``.deb``) without dpkg: the downloader's ``deb`` entries.

A ``.deb`` is an ``ar`` archive of ``debian-binary`` ("2.0"), ``control.tar.*`` and ``data.tar.*``
(plain, gz, xz, bz2, or zst when the ``zstandard`` module is installed). :func:`unpack_deb` reads the
ar container itself, decompresses the data archive into a staging folder and extracts only the files
under one prefix (``usr/share/fonts`` for the font packages, ``usr/share/icons`` for the icon themes)
with that prefix stripped. Every member goes through the checks of :func:`dass.archives.safe_extract`
first: an absolute or ``..`` path, or a device file, anywhere in the package refuses the whole package
before anything is written; a link whose target leaves the prefix (icon themes link into other
packages' folders) is skipped and counted instead, since it would dangle or point outside the root.
An absolute link that lands inside the prefix becomes the equivalent relative link.
"""
from __future__ import annotations

import bz2
import copy
import gzip
import io
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path

from .archives import check_members, member_parts, merge_tree
from .errors import DownloadError

AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
_DECOMPRESSORS = {"": lambda f: f, ".gz": lambda f: gzip.GzipFile(fileobj=f), ".xz": lzma.LZMAFile,
                  ".bz2": bz2.BZ2File}


def ar_members(path: Path) -> dict[str, tuple[int, int]]:
    """``name -> (offset, size)`` of the members of an ``ar`` archive (the common and GNU formats)."""
    out: dict[str, tuple[int, int]] = {}
    total = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(len(AR_MAGIC)) != AR_MAGIC:
            raise DownloadError(f"{path} is not a Debian package (no ar header); delete it and fetch it again")
        pos = len(AR_MAGIC)
        while pos < total:
            head = f.read(_AR_HEADER)
            if len(head) < _AR_HEADER or head[58:60] != b"`\n" or not head[48:58].strip().isdigit():
                raise DownloadError(f"{path} is a truncated or corrupt Debian package (bad ar member header at "
                                    f"byte {pos}); delete it and fetch it again")
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(head[48:58])
            start = pos + _AR_HEADER
            if start + size > total:
                raise DownloadError(f"{path} is a truncated Debian package (member {name} runs past the end); "
                                    f"delete it and fetch it again")
            out[name] = (start, size)
            pos = start + size + (size % 2)  # members are padded to an even offset
            f.seek(pos)
    return out


def _decompressor(suffix: str, path: Path):
    if suffix in _DECOMPRESSORS:
        return _DECOMPRESSORS[suffix]
    if suffix == ".zst":
        try:
            import zstandard  # optional: Debian bookworm packages use xz, some others zstd
        except ImportError:
            raise DownloadError(f"{path} compresses its data with zstd; pip install zstandard to unpack it") from None
        return lambda f: zstandard.ZstdDecompressor().stream_reader(f)
    raise DownloadError(f"{path} has a data archive compressed as '{suffix}', which is not supported "
                        f"(gz, xz, bz2, zst are)")


def _data_tar(deb: Path, stage: Path) -> Path:
    """Decompress the package's ``data.tar.*`` into ``stage/data.tar`` (random access for tarfile)."""
    members = ar_members(deb)
    version = members.get("debian-binary")
    data = sorted(n for n in members if n.startswith("data.tar"))
    if version is None or not data:
        raise DownloadError(f"{deb} is not a Debian binary package (no debian-binary / data.tar member); "
                            f"check the manifest entry")
    offset, size = members[data[0]]
    with open(deb, "rb") as f:
        f.seek(version[0])
        if not f.read(version[1]).startswith(b"2."):
            raise DownloadError(f"{deb} is a Debian package of an unknown format version; it cannot be unpacked")
        f.seek(offset)
        blob = io.BytesIO(f.read(size))
    out = stage / "data.tar"
    try:
        with _decompressor(data[0][len("data.tar"):], deb)(blob) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, lzma.LZMAError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"{deb} has a corrupt {data[0]} ({first}); delete it and fetch it again") from None
    return out


def _inside(path: str, prefix: str) -> bool:
    return path.startswith(prefix + "/")


def _rebase(m: tarfile.TarInfo, parts: list[str], prefix: str) -> tarfile.TarInfo | None:
    """``m`` with ``prefix/`` stripped from its name (and link target); None for a link leaving the prefix."""
    full = "/".join(parts)
    new = copy.copy(m)
    new.name = full[len(prefix) + 1:]
    if m.issym() or m.islnk():
        target = m.linkname.replace("\\", "/")
        if m.issym() and not target.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(full), target))
        else:  # absolute symlink (from the package's /) or hard link (archive-relative)
            resolved = posixpath.normpath(target.lstrip("/").removeprefix("./"))
        if not _inside(resolved, prefix):
            return None
        if m.islnk():
            new.linkname = resolved[len(prefix) + 1:]
        elif target.startswith("/"):
            new.linkname = posixpath.relpath(resolved, posixpath.dirname(full))
    return new


def select_members(members: list[tarfile.TarInfo], prefix: str, deb: Path) -> tuple[list[tarfile.TarInfo], int]:
    """The members under ``prefix`` renamed without it, and the number of links skipped. Raises when any
    member of the package is unsafe (absolute, ``..``, a device), whether under the prefix or not."""
    prefix = prefix.strip("/")
    keep, skipped = [], 0
    for m in members:
        parts = member_parts(m.name, deb)
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DownloadError(f"archive {deb} has a device/fifo member '{m.name}'; refusing to extract anything "
                                f"from it")
        if len(parts) <= len(prefix.split("/")) or not _inside("/".join(parts), prefix):
            continue
        new = _rebase(m, parts, prefix)
        if new is None:
            skipped += 1
        else:
            keep.append(new)
    check_members(keep, deb)  # a second look at what will really be written (links through links, ...)
    return keep, skipped


def unpack_deb(deb: str | os.PathLike, target: str | os.PathLike, prefix: str) -> tuple[list[Path], int]:
    """Extract the files of ``deb`` under ``prefix`` into ``target`` (prefix stripped); return the paths
    written and the number of links skipped because they leave the prefix. Nothing is written into
    ``target`` unless the whole package is readable and safe (it is staged inside ``target`` first)."""
    deb, target = Path(deb), Path(target)
    if not deb.is_file():
        raise DownloadError(f"package {deb} does not exist; download it first")
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{deb.name}.", suffix=".extract", dir=target))
    try:
        tar_path = _data_tar(deb, stage)
        with tarfile.open(tar_path) as tf:
            keep, skipped = select_members(tf.getmembers(), prefix, deb)
            tree = stage / "tree"
            tree.mkdir()
            if hasattr(tarfile, "data_filter"):  # second line of defence (Python >= 3.11.4)
                tf.extractall(tree, members=keep, filter="data")
            else:
                tf.extractall(tree, members=keep)
        return merge_tree(tree, target), skipped
    except tarfile.TarError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"package {deb} has a corrupt or unsafe data archive ({first}); delete it and fetch it "
                            f"again") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
