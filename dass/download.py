"""Downloads: the authors' datasets, teachers and preprocessed database.

Formats: docs/method.md#benchmark, #file-formats; what is missing from the release: #authors-compat.

The file list lives in ``download/manifest.yaml`` (data, not code), grouped by the script that fetches
it: ``dataset``, ``checkpoint``, ``preprocessed``. This module is the machinery shared by the three
thin CLIs in ``download/``:

- :func:`fetch` -- one URL to one file over plain ``urllib``: a ``<dest>.part`` file is resumed with an
  HTTP ``Range`` request (a dropped connection or a killed run loses nothing), transient failures are
  retried with exponential backoff, every socket operation has a timeout, progress is shown with tqdm,
  the sha256 is verified when the manifest pins one (and printed otherwise, so it can be pinned), and
  only a complete, verified file is renamed to its final name (``os.replace``: atomic).
- :func:`fetch_gdrive` -- the same contract for a Google-Drive file id, through ``gdown``.
- :func:`safe_extract` -- unpacks .zip / .tar(.gz|.bz2|.xz) after checking EVERY member first: an
  absolute path, a ``..`` component, a link whose target leaves the folder, a member reached through
  a link, or a device file refuses the whole archive before anything is written.
- :func:`download_group` / :func:`main` -- what the CLIs run (selection, mirrors, dry run).

Mirrors: ``DASS_MIRROR=<base>`` (or ``--mirror <base>``) fetches every file from
``<base>/<group root>/<path>`` -- a static server over a folder laid out like a finished checkout.
Every failure is a one-line :class:`DownloadError` naming the file and the URL.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import inspect
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, TextIO

import yaml
from tqdm import tqdm

from . import __version__
from .errors import DassError

MIRROR_ENV = "DASS_MIRROR"
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "download" / "manifest.yaml"
USER_AGENT = f"dass-downloader/{__version__}"
GROUPS = ("dataset", "checkpoint", "preprocessed")
URL_SCHEMES = ("http", "https", "ftp", "file")
# Status codes worth another try: the server or a proxy is busy, not the request wrong.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_KEYS = {"name", "path", "url", "gdrive", "sha256", "extract"}


class DownloadError(DassError):
    """A download, checksum, manifest or archive problem (one line naming the file and the URL)."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, short body, busy server)."""


# --------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class FileEntry:
    """One file of the manifest; exactly one of ``url`` / ``gdrive`` is set."""

    name: str
    path: str
    url: Optional[str] = None
    gdrive: Optional[str] = None
    sha256: Optional[str] = None
    extract: bool = False

    @property
    def source(self) -> str:
        return self.url if self.url else f"gdrive:{self.gdrive}"


@dataclass(frozen=True)
class Group:
    """The files one script fetches, and the folder they land in by default."""

    name: str
    root: str
    files: tuple[FileEntry, ...]

    def names(self) -> list[str]:
        return list(dict.fromkeys(f.name for f in self.files))

    def select(self, names: Sequence[str]) -> list[FileEntry]:
        """Files for ``names``; ``all`` selects everything, and a name with no exact match selects
        the files named ``<name>-<k>`` (so ``tiny_imagenet`` picks the ten split teachers)."""
        names = list(names) or ["all"]
        if "all" in names:
            return list(self.files)
        chosen: list[FileEntry] = []
        for n in names:
            hits = [f for f in self.files if f.name == n] or [f for f in self.files if f.name.startswith(n + "-")]
            if not hits:
                raise DownloadError(f"unknown --name '{n}' for {self.name}; choose from: all, "
                                    f"{', '.join(self.names())}")
            chosen.extend(h for h in hits if h not in chosen)
        return chosen

    def mirror_path(self, entry: FileEntry) -> str:
        """Where a mirror holds ``entry``: the checkout layout ``<root>/<path>``."""
        return posixpath.normpath(posixpath.join(self.root, entry.path))


def _relpath(value, where: str) -> str:
    """A manifest path: relative, forward slashes, no '..' -- it must stay inside its root."""
    if not isinstance(value, str) or not value.strip():
        raise DownloadError(f"{where} must be a non-empty relative path")
    parts = re.split(r"[\\/]+", value)
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value) or ".." in parts or "\x00" in value:
        raise DownloadError(f"{where} '{value}' must be a relative path without '..'; fix the manifest")
    return posixpath.normpath(value.replace("\\", "/"))


def _check_url(url, where: str) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
        raise DownloadError(f"{where} '{url}' is not a URL ({'/'.join(URL_SCHEMES)}); fix it")
    return url


def load_manifest(path: Optional[str | os.PathLike] = None) -> dict[str, Group]:
    """Read and validate a manifest (default ``download/manifest.yaml``); see that file for the format."""
    p = Path(path) if path is not None else DEFAULT_MANIFEST
    if not p.is_file():
        raise DownloadError(f"manifest {p} does not exist; pass --manifest with an existing file")
    try:
        doc = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"manifest {p} is not valid YAML ({first}); fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise DownloadError(f"manifest {p} needs a top-level 'groups:' mapping (see download/manifest.yaml)")
    groups: dict[str, Group] = {}
    for gname, g in doc["groups"].items():
        where = f"manifest {p}: groups.{gname}"
        if not isinstance(g, dict) or not isinstance(g.get("files"), list):
            raise DownloadError(f"{where} needs 'root:' and a 'files:' list")
        root = g.get("root", ".")
        if not isinstance(root, str) or not root:
            raise DownloadError(f"{where}.root must be a folder name")
        files = []
        for i, e in enumerate(g["files"]):
            ew = f"{where}.files[{i}]"
            if not isinstance(e, dict):
                raise DownloadError(f"{ew} must be a mapping with name/path/url")
            unknown = sorted(set(e) - _ENTRY_KEYS)
            if unknown:
                raise DownloadError(f"{ew} has unknown key(s) {', '.join(unknown)}; allowed: "
                                    f"{', '.join(sorted(_ENTRY_KEYS))}")
            name = e.get("name")
            if not isinstance(name, str) or not name or name == "all":
                raise DownloadError(f"{ew}.name must be a non-empty string other than 'all'")
            if (e.get("url") is None) == (e.get("gdrive") is None):
                raise DownloadError(f"{ew} needs exactly one of 'url' or 'gdrive'")
            url = _check_url(e["url"], f"{ew}.url") if e.get("url") is not None else None
            gdrive = e.get("gdrive")
            if gdrive is not None and (not isinstance(gdrive, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", gdrive)):
                raise DownloadError(f"{ew}.gdrive '{gdrive}' is not a Google-Drive file id")
            sha = e.get("sha256")
            if sha is not None:
                sha = str(sha).lower()
                if not _SHA256_RE.match(sha):
                    raise DownloadError(f"{ew}.sha256 must be 64 hex digits (got '{e['sha256']}')")
            extract = e.get("extract", False)
            if not isinstance(extract, bool):
                raise DownloadError(f"{ew}.extract must be true or false")
            files.append(FileEntry(name=name, path=_relpath(e.get("path"), f"{ew}.path"), url=url,
                                   gdrive=gdrive, sha256=sha, extract=extract))
        groups[str(gname)] = Group(name=str(gname), root=root, files=tuple(files))
    return groups


def mirror_url(base: str, rel: str) -> str:
    """``<base>/<rel>`` with ``rel`` percent-quoted: the mirror holds the checkout layout."""
    _check_url(base, f"mirror ({MIRROR_ENV} / --mirror)")
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def resolve_source(group: Group, entry: FileEntry, mirror: Optional[str] = None,
                   url: Optional[str] = None) -> tuple[str, str]:
    """``(kind, where)``: kind ``http`` (a URL for urllib) or ``gdrive`` (a file id for gdown).

    Precedence: an explicit ``url`` > ``mirror`` > ``$DASS_MIRROR`` > the manifest entry.
    """
    if url:
        return "http", _check_url(url, "--url")
    base = mirror if mirror else os.environ.get(MIRROR_ENV, "").strip()
    if base:
        return "http", mirror_url(base, group.mirror_path(entry))
    if entry.gdrive:
        return "gdrive", entry.gdrive
    return "http", entry.url  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ fetch
def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _say(msg: str, out: Optional[TextIO] = None) -> None:
    print(msg, file=out or sys.stdout, flush=True)


def _progress_on(progress: Optional[bool]) -> bool:
    # Bars only on an interactive terminal unless asked: logs and test output stay readable.
    return sys.stderr.isatty() if progress is None else bool(progress)


def _content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``bytes a-b/N`` -> (a, N); ``bytes */N`` -> (None, N); anything else -> (None, None)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _one_attempt(url: str, part: Path, timeout: float, chunk_size: int, progress: bool, label: str) -> None:
    """Fetch (the rest of) ``url`` into ``part``; raise _Transient / HTTPError / OSError on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            _, total = _content_range(e.headers.get("Content-Range") if e.headers else None)
            e.close()
            if total == offset:
                return  # the .part already holds the whole file
            part.unlink()  # stale or longer than the file: start over
            raise _Transient("server refused the resume range; restarting from byte 0") from None
        raise
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// responses carry no status
        mode = "wb"
        if offset and status == 206:
            start, _ = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(f"server resumed at byte {start}, not {offset}; restarting from byte 0")
            mode = "ab"
        else:
            offset = 0  # the server ignored Range (status 200): the body is the whole file
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, mode) as f, tqdm(total=None if expected is None else offset + expected, initial=offset,
                                         unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                                         disable=not progress, leave=False) as bar:
            while True:
                block = resp.read(chunk_size)
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    # http.client returns b"" (no exception) when the peer closes early: compare with Content-Length.
    if expected is not None and received < expected:
        raise _Transient(f"connection closed after {offset + received} of {offset + expected} bytes")


def _commit(staged: Path, dest: Path, sha256: Optional[str], source: str, out: Optional[TextIO]) -> Path:
    """Verify ``staged`` and rename it to ``dest``; a bad digest deletes it and raises."""
    digest = sha256_file(staged)
    if sha256 and digest != sha256.lower():
        staged.unlink()
        raise DownloadError(f"sha256 mismatch for {dest} from {source}: expected {sha256.lower()}, got {digest}; "
                            f"the download was deleted -- re-run, or check the mirror / the manifest digest")
    if not sha256:
        _say(f"sha256 {digest}  {dest}  (no digest pinned; add it to the manifest to verify future downloads)", out)
    os.replace(staged, dest)
    return dest


def fetch(url: str, dest: str | os.PathLike, sha256: Optional[str] = None, *, retries: int = 3,
          timeout: float = 60.0, backoff: float = 1.0, progress: Optional[bool] = None,
          chunk_size: int = 1 << 16, out: Optional[TextIO] = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``), verify, rename atomically; return ``dest``.

    ``retries`` extra attempts follow a transient failure (connection refused/reset/timeout, short body,
    HTTP 408/429/5xx), sleeping ``backoff * 2**k`` seconds (capped) in between; each one resumes the
    ``.part`` file. Other HTTP errors (404, 403, ...) fail at once. Raises :class:`DownloadError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempts = max(0, int(retries)) + 1
    last = ""
    for k in range(attempts):
        if k:
            time.sleep(min(backoff * 2 ** (k - 1), MAX_BACKOFF_S))
        try:
            _one_attempt(url, part, timeout, chunk_size, _progress_on(progress), dest.name)
            return _commit(part, dest, sha256, url, out)
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code} {e.reason}"
            e.close()
            if e.code not in RETRY_STATUS:
                raise DownloadError(f"{last} for {dest} from {url}; check the URL (or the mirror's layout)") from None
        except urllib.error.URLError as e:
            last = str(e.reason)
            if isinstance(e.reason, (FileNotFoundError, NotADirectoryError, PermissionError)):
                # a file:// mirror without that file: waiting will not make it appear
                raise DownloadError(f"{last} for {dest} from {url}; check the URL (or the mirror's layout)") from None
        except (_Transient, OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
    kept = f"; {part} is kept and a re-run resumes it" if part.exists() and part.stat().st_size else ""
    raise DownloadError(f"could not fetch {dest} from {url} after {attempts} attempt(s) ({last}){kept}")


def fetch_gdrive(file_id: str, dest: str | os.PathLike, sha256: Optional[str] = None, *, retries: int = 3,
                 timeout: float = 60.0, progress: Optional[bool] = None, out: Optional[TextIO] = None) -> Path:
    """Download a Google-Drive file id with gdown (it handles Drive's confirmation pages and resume)
    into ``<dest>.gdrive``, then verify and rename like :func:`fetch`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    where = f"https://drive.google.com/uc?id={file_id}"
    try:
        import gdown  # a declared dependency, imported lazily: plain-URL downloads never need it
    except ImportError:
        raise DownloadError(f"gdown is needed to fetch {dest} from {where}; pip install gdown "
                            f"(it is in requirements.txt) or set {MIRROR_ENV}") from None
    staged = dest.with_name(dest.name + ".gdrive")
    kwargs = dict(id=file_id, output=str(staged), quiet=not _progress_on(progress), resume=True)
    accepted = inspect.signature(gdown.download).parameters
    for key, value in (("retries", max(0, int(retries))), ("timeout", timeout)):
        if key in accepted:  # older gdown releases lack these
            kwargs[key] = value
    try:
        result = gdown.download(**kwargs)
    except Exception as e:  # gdown raises many types (requests, its own); all mean "not fetched"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"Google-Drive download of {dest} from {where} failed ({first}); "
                            f"re-run to resume, or set {MIRROR_ENV}") from None
    if result is None or not staged.is_file():
        raise DownloadError(f"Google-Drive download of {dest} from {where} produced no file; check the id or "
                            f"the file's sharing settings, or set {MIRROR_ENV}")
    return _commit(staged, dest, sha256, where, out)


# ---------------------------------------------------------------------------------------- archives
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


def _member_parts(name: str, archive: Path) -> list[str]:
    """Validated path components of an archive member (empty list = the archive root itself)."""
    bad = (name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or "\x00" in name)
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if bad or ".." in parts:
        raise DownloadError(f"archive {archive} has an unsafe member '{name}' (absolute or '..' path); "
                            f"refusing to extract anything from it")
    return parts


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        _member_parts(info.filename, archive)
        # zipfile never creates links, it would write the link text as a file: refuse instead of guessing.
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"archive {archive} has a symlink member '{info.filename}'; "
                                f"refusing to extract anything from it")


def _check_tar(tf: tarfile.TarFile, archive: Path) -> None:
    links: set[tuple[str, ...]] = set()
    for m in tf.getmembers():
        parts = tuple(_member_parts(m.name, archive))
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


def _merge_tree(stage: Path, target: Path) -> list[Path]:
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
        return _merge_tree(stage, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"archive {archive} is corrupt or unsafe ({first}); delete it and download it again") \
            from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ------------------------------------------------------------------------------------- high level
@dataclass(frozen=True)
class PlannedFile:
    entry: FileEntry
    kind: str       # "http" | "gdrive"
    source: str     # URL or Drive id
    dest: Path

    def describe(self) -> str:
        return self.source if self.kind == "http" else f"https://drive.google.com/uc?id={self.source}"


def plan(group: Group, entries: Iterable[FileEntry], root: Optional[str | os.PathLike] = None,
         mirror: Optional[str] = None, url: Optional[str] = None) -> list[PlannedFile]:
    """Where each entry comes from and goes to (nothing is fetched)."""
    entries = list(entries)
    if url and len(entries) != 1:
        raise DownloadError(f"--url gives one file but the selection has {len(entries)}; pick one --name "
                            f"or use --mirror for several")
    base = Path(root) if root is not None else Path(group.root)
    out = []
    for e in entries:
        kind, source = resolve_source(group, e, mirror, url)
        out.append(PlannedFile(e, kind, source, base / e.path))
    return out


def _marker(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.extracted")


def download_group(group: Group, names: Sequence[str] = ("all",), root: Optional[str | os.PathLike] = None,
                   mirror: Optional[str] = None, url: Optional[str] = None, *, retries: int = 3,
                   timeout: float = 60.0, backoff: float = 1.0, progress: Optional[bool] = None,
                   force: bool = False, dry_run: bool = False, out: Optional[TextIO] = None) -> list[Path]:
    """Fetch (and unpack) the selected files of ``group``; re-running skips what is already complete.

    A present file is kept when it matches its pinned sha256 (or none is pinned); ``force`` re-fetches.
    An archive is unpacked next to itself once; a hidden ``.<archive>.extracted`` marker holding the
    archive's digest makes re-runs skip it. Returns the final paths of the selected files.
    """
    planned = plan(group, group.select(names), root, mirror, url)
    if dry_run:
        for p in planned:
            state = "present" if p.dest.exists() else (
                f"partial {p.dest.with_name(p.dest.name + '.part').stat().st_size} B, resumes"
                if p.dest.with_name(p.dest.name + ".part").exists() else "to fetch")
            flags = (" [sha256 pinned]" if p.entry.sha256 else "") + (" [extract]" if p.entry.extract else "")
            _say(f"{p.describe()} -> {p.dest} ({state}){flags}", out)
        todo = sum(not p.dest.exists() for p in planned)
        _say(f"dry run: {len(planned)} file(s), {todo} to fetch", out)
        return [p.dest for p in planned]
    for p in planned:
        fresh = force or not p.dest.exists()
        if not fresh and p.entry.sha256 and sha256_file(p.dest) != p.entry.sha256:
            _say(f"{p.dest} does not match its pinned sha256; fetching it again", out)
            fresh = True
        if fresh:
            _say(f"fetching {p.dest} from {p.describe()}", out)
            if p.kind == "gdrive":
                fetch_gdrive(p.source, p.dest, p.entry.sha256, retries=retries, timeout=timeout,
                             progress=progress, out=out)
            else:
                fetch(p.source, p.dest, p.entry.sha256, retries=retries, timeout=timeout, backoff=backoff,
                      progress=progress, out=out)
        else:
            _say(f"{p.dest} is present; skipped (--force fetches it again)", out)
        if p.entry.extract:
            marker = _marker(p.dest)
            digest = sha256_file(p.dest)
            if not fresh and marker.is_file() and marker.read_text().strip() == digest:
                _say(f"{p.dest} was already extracted; skipped", out)
                continue
            written = safe_extract(p.dest, p.dest.parent)
            marker.write_text(digest + "\n")
            _say(f"extracted {len(written)} file(s) from {p.dest} into {p.dest.parent}", out)
    return [p.dest for p in planned]


# -------------------------------------------------------------------------------------------- CLI
_DESCRIPTIONS = {
    "dataset": "Download the authors' datasets (numpy arrays, docs/method.md#benchmark) into data/<name>/.",
    "checkpoint": "Download the authors' trained ResNet42 teachers into checkpoint/teacher/<task>/model_best.pth.tar.",
    "preprocessed": "Download and unpack the authors' preprocessed meta-training database (preprocessed/...).",
}


def build_parser(group: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog, description=_DESCRIPTIONS.get(group, f"Download the '{group}' files of the manifest."),
        epilog=f"Mirrors: set {MIRROR_ENV}=<base URL> (or --mirror) to fetch <base>/<root>/<path> for every file.")
    ap.add_argument("--name", nargs="+", default=["all"],
                    help="what to fetch: 'all' or names from the manifest (see --dry-run); default all")
    ap.add_argument("--root", "--dir_path", dest="root", default=None,
                    help="destination folder (default: the manifest group's root)")
    ap.add_argument("--manifest", default=None, help=f"manifest file (default {DEFAULT_MANIFEST})")
    ap.add_argument("--mirror", default=None, help=f"base URL of a mirror (overrides ${MIRROR_ENV})")
    ap.add_argument("--url", default=None, help="explicit URL for the one selected file")
    ap.add_argument("--dry-run", action="store_true", help="list what would be fetched, fetch nothing")
    ap.add_argument("--force", action="store_true", help="fetch again even if the file is present")
    ap.add_argument("--retries", type=int, default=3, help="extra attempts after a transient failure (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default 60)")
    ap.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each time")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def main(group: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of the ``download/download_<group>.py`` scripts; returns the exit status."""
    args = build_parser(group, prog).parse_args(argv)
    try:
        groups = load_manifest(args.manifest)
        if group not in groups:
            raise DownloadError(f"manifest {args.manifest or DEFAULT_MANIFEST} has no group '{group}'; "
                                f"it has: {', '.join(groups) or 'none'}")
        download_group(groups[group], args.name, args.root, args.mirror, args.url, retries=args.retries,
                       timeout=args.timeout, backoff=args.backoff, progress=False if args.no_progress else None,
                       force=args.force, dry_run=args.dry_run)
    except DassError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
