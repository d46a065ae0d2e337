"""Archives unpacked only inside their target folder: zip and tar (the authors' ``preprocessed.zip``) and,
through :mod:`dass.debpkg`, Debian packages.

:func:`safe_extract` checks EVERY member first: an absolute path, a ``..`` component, a link whose target
leaves the folder, a member reached through a link, or a device file refuses the whole archive before
anything is written; then the archive is unpacked into a staging folder inside the target and moved in.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable

from .errors import DownloadError


def _archive_kind(path: Path) -> str:
    n = path.name.lower()
    if n.endswith(".zip"):
        return "zip"
    if n.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DownloadError(f"{path} is neither a zip nor a tar archive; set extract: false in the manifest")


def member_parts(name: str, archive: Path) -> list[str]:
    """Validated path components of an archive member (empty list = the archive root itself)."""
    bad = (name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or "\x00" in name)
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if bad or ".." in parts:
        raise DownloadError(f"archive {archive} has an unsafe member '{name}' (absolute or '..' path); "
                            f"refusing to extract anything from it")
    return parts


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        member_parts(info.filename, archive)
        # zipfile never creates links, it would write the link text as a file: refuse instead of guessing.
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"archive {archive} has a symlink member '{info.filename}'; "
                                f"refusing to extract anything from it")


def _check_tar(tf: tarfile.TarFile, archive: Path) -> None:
    check_members(tf.getmembers(), archive)


def check_members(members: Iterable[tarfile.TarInfo], archive: Path) -> None:
    """Refuse (raise) unless every tar member stays inside the folder it is extracted into."""
    links: set[tuple[str, ...]] = set()
    for m in members:
        parts = tuple(member_parts(m.name, archive))
        for i in range(1, len(parts)):
            if parts[:i] in links:  # writing through an earlier link could land anywhere
                raise DownloadError(f"archive {archive} member '{m.name}' goes through a link; "
                                    f"refusing to extract anything from it")
        if m.issym() or m.islnk():
            target = m.linkname
            base = posixpath.dirname("/".join(parts)) if m.issym() else ""  # hard links are archive-relative
            resolved = posixpath.normpath(posixpath.join(base, target.replace("\\", "/"))) if target else ""
            if (not target or target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target)
                    or resolved == ".." or resolved.startswith("../")):
                kind = "symlink" if m.issym() else "hard link"
                raise DownloadError(f"archive {archive} has a {kind} '{m.name}' -> '{target}' that leaves the "
                                    f"target folder; refusing to extract anything from it")
            links.add(parts)
        elif not (m.isfile() or m.isdir()):
            raise DownloadError(f"archive {archive} has a device/fifo member '{m.name}'; "
                                f"refusing to extract anything from it")


def merge_tree(stage: Path, target: Path) -> list[Path]:
    """Move everything under ``stage`` into ``target`` file by file (os.replace: atomic per file)."""
    written: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(stage):
        dest_dir = target / Path(dirpath).relative_to(stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        linked = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in linked]  # move links, never descend them
        for n in filenames + linked:
            dst = dest_dir / n
            if dst.is_dir() and not dst.is_symlink():
                raise DownloadError(f"cannot extract {dst}: a folder of that name exists; move it away")
            os.replace(os.path.join(dirpath, n), dst)
            written.append(dst)
    return written


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Unpack ``archive`` into ``target`` and return the paths written.

    Every member is checked before anything is written (see module doc); the archive is unpacked into
    a hidden staging folder inside ``target`` and moved into place only when complete, so a corrupt or
    unsafe archive leaves ``target`` as it was.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist; download it first")
    kind = _archive_kind(archive)
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extract", dir=target))
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                zf.extractall(stage)
        else:
            with tarfile.open(archive) as tf:
                _check_tar(tf, archive)
                if hasattr(tarfile, "data_filter"):  # second line of defence (Python >= 3.11.4)
                    tf.extractall(stage, filter="data")
                else:
                    tf.extractall(stage)
        return merge_tree(stage, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"archive {archive} is corrupt or unsafe ({first}); delete it and download it again") \
            from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
