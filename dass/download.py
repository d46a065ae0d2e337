"""Downloads: the authors' datasets, teachers and preprocessed database.

Formats: docs/method.md#benchmark, #file-formats; what is missing from the release: #authors-compat.

The file list lives in ``dass/download_manifest.yaml`` (data, not code), grouped by the script that fetches
it: ``dataset``, ``checkpoint``, ``preprocessed``. This module is the machinery shared by the three
thin CLIs in ``download/``:

- :func:`fetch` -- one URL to one file over plain ``urllib``: a ``<dest>.part`` file is resumed with an
  HTTP ``Range`` request (a dropped connection or a killed run loses nothing), transient failures are
  retried with exponential backoff, every socket operation has a timeout, progress is shown with tqdm,
  the sha256 is verified when the manifest pins one (and printed otherwise, so it can be pinned), and
  only a complete, verified file is renamed to its final name (``os.replace``: atomic).
- :func:`fetch_gdrive` -- the same contract for a Google-Drive file id, through ``gdown``.
- :func:`dass.archives.safe_extract` -- unpacks .zip / .tar(.gz|.bz2|.xz) after checking EVERY member first: an
  absolute path, a ``..`` component, a link whose target leaves the folder, a member reached through
  a link, or a device file refuses the whole archive before anything is written.
- :func:`download_group` / :func:`main` -- what the CLIs run (selection, mirrors, dry run).

Mirrors: ``DASS_MIRROR=<base>`` (or ``--mirror <base>``) fetches every file from
``<base>/<group root>/<path>`` -- a static server over a folder laid out like a finished checkout.
A local folder is a mirror too (``--from-folder DIR``): each file is taken from ``DIR/<path>``, else
``DIR/<basename>``, else ``DIR/<basename>.gz`` (gunzipped), copied atomically and verified.
Every failure is a one-line :class:`DownloadError` naming the file and the URL.

Upstream forms (manifest keys, see dass/download_manifest.yaml): ``gunzip`` entries are published as
``.gz`` (checked against their ``md5``, decompressed atomically; ``sha256`` pins the decompressed
file); ``deb`` entries are Debian packages whose files under the group's ``deb_prefix`` are unpacked
into the group's root (:mod:`dass.debpkg`), after which the ``.deb`` is deleted and a hidden marker
holding its digest makes re-runs skip it. Groups ``fonts`` and ``icons`` hold such packages (they feed
:mod:`dass.data.sources`) and are fetched by ``download/download_sources.py``.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import http.client
import inspect
import os
import posixpath
import re
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional, Sequence, TextIO

import yaml
from tqdm import tqdm

from . import __version__
from .archives import safe_extract
from .errors import DownloadError, run_reporting_errors
from .io import sha256_file

MIRROR_ENV = "DASS_MIRROR"
# package data (dass/download_manifest.yaml), so an installed package downloads as a checkout does
DEFAULT_MANIFEST = Path(str(resources.files("dass").joinpath("download_manifest.yaml")))
USER_AGENT = f"dass-downloader/{__version__}"
GROUPS = ("dataset", "checkpoint", "preprocessed", "fonts", "icons")
URL_SCHEMES = ("http", "https", "ftp", "file")
# Status codes worth another try: the server or a proxy is busy, not the request wrong.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_ENTRY_KEYS = {"name", "path", "url", "gdrive", "sha256", "extract", "md5", "gunzip", "deb", "optional"}
_FLAG_KEYS = ("extract", "gunzip", "deb", "optional")


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
    md5: Optional[str] = None     # digest of the file as fetched from ``url`` (the .gz for gunzip entries)
    gunzip: bool = False          # ``url`` serves ``<path>.gz``; ``sha256`` pins the decompressed file
    deb: bool = False             # a Debian package: its ``deb_prefix`` files are unpacked into the root
    optional: bool = False        # fetched only when named: ``--name all`` skips it

    @property
    def source(self) -> str:
        return self.url if self.url else f"gdrive:{self.gdrive}"


@dataclass(frozen=True)
class Group:
    """The files one script fetches, and the folder they land in by default."""

    name: str
    root: str
    files: tuple[FileEntry, ...]
    deb_prefix: Optional[str] = None   # the folder of a package whose files ``deb`` entries unpack

    def names(self) -> list[str]:
        return list(dict.fromkeys(f.name for f in self.files))

    def select(self, names: Sequence[str]) -> list[FileEntry]:
        """Files for ``names``; ``all`` selects everything but the ``optional`` entries not also named,
        and a name with no exact match selects the files named ``<name>-<k>`` (so ``tiny_imagenet``
        picks the ten split teachers)."""
        names = list(names) or ["all"]
        if "all" in names:
            rest = [n for n in names if n != "all"]
            named = self.select(rest) if rest else []
            return [f for f in self.files if not f.optional or f in named]
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
    """Read and validate a manifest (default ``dass/download_manifest.yaml``); see that file for the format."""
    p = Path(path) if path is not None else DEFAULT_MANIFEST
    if not p.is_file():
        raise DownloadError(f"manifest {p} does not exist; pass --manifest with an existing file")
    try:
        doc = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DownloadError(f"manifest {p} is not valid YAML ({first}); fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise DownloadError(f"manifest {p} needs a top-level 'groups:' mapping (see dass/download_manifest.yaml)")
    return {str(gname): _parse_group(str(gname), g, f"manifest {p}: groups.{gname}")
            for gname, g in doc["groups"].items()}


def _parse_group(gname: str, g, where: str) -> Group:
    if not isinstance(g, dict) or not isinstance(g.get("files"), list):
        raise DownloadError(f"{where} needs 'root:' and a 'files:' list")
    root = g.get("root", ".")
    if not isinstance(root, str) or not root:
        raise DownloadError(f"{where}.root must be a folder name")
    prefix = g.get("deb_prefix")
    if prefix is not None:
        prefix = _relpath(prefix, f"{where}.deb_prefix")
    files = tuple(_parse_entry(e, f"{where}.files[{i}]") for i, e in enumerate(g["files"]))
    if prefix is None and any(f.deb for f in files):
        raise DownloadError(f"{where} has deb entries but no 'deb_prefix:' (the package folder to unpack, "
                            f"e.g. usr/share/fonts)")
    return Group(name=gname, root=root, files=files, deb_prefix=prefix)


def _digest_key(e: dict, key: str, pattern: re.Pattern, digits: int, ew: str) -> Optional[str]:
    value = e.get(key)
    if value is None:
        return None
    if not pattern.match(str(value).lower()):
        raise DownloadError(f"{ew}.{key} must be {digits} hex digits (got '{value}')")
    return str(value).lower()


def _parse_entry(e, ew: str) -> FileEntry:
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
    flags = {k: e.get(k, False) for k in _FLAG_KEYS}
    for k, v in flags.items():
        if not isinstance(v, bool):
            raise DownloadError(f"{ew}.{k} must be true or false")
    if sum((flags["extract"], flags["gunzip"], flags["deb"])) > 1:
        raise DownloadError(f"{ew} may set only one of extract / gunzip / deb")
    return FileEntry(name=name, path=_relpath(e.get("path"), f"{ew}.path"), url=url, gdrive=gdrive,
                     sha256=_digest_key(e, "sha256", _SHA256_RE, 64, ew),
                     md5=_digest_key(e, "md5", _MD5_RE, 32, ew), **flags)


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
def _digests(path: str | os.PathLike, chunk_size: int = 1 << 20) -> tuple[str, str]:
    """``(sha256, md5)`` of a file in one read."""
    h, m = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
            m.update(block)
    return h.hexdigest(), m.hexdigest()


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


def _commit(staged: Path, dest: Path, sha256: Optional[str], source: str, out: Optional[TextIO],
            md5: Optional[str] = None) -> Path:
    """Verify ``staged`` and rename it to ``dest``; a bad digest deletes it and raises."""
    digest, md5_got = _digests(staged)
    for kind, want, got in (("md5", md5, md5_got), ("sha256", sha256, digest)):
        if want and got != want.lower():
            staged.unlink()
            raise DownloadError(f"{kind} mismatch for {dest} from {source}: expected {want.lower()}, got {got}; "
                                f"the download was deleted -- re-run, or check the mirror / the manifest digest")
    if not sha256 and not md5:
        _say(f"sha256 {digest}  {dest}  (no digest pinned; add it to the manifest to verify future downloads)", out)
    os.replace(staged, dest)
    return dest


def fetch(url: str, dest: str | os.PathLike, sha256: Optional[str] = None, *, retries: int = 3,
          timeout: float = 60.0, backoff: float = 1.0, progress: Optional[bool] = None,
          chunk_size: int = 1 << 16, out: Optional[TextIO] = None, md5: Optional[str] = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``), verify, rename atomically; return ``dest``.

    ``sha256`` and ``md5`` (either may be None) pin the fetched bytes.

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
            return _commit(part, dest, sha256, url, out, md5)
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
                 timeout: float = 60.0, progress: Optional[bool] = None, out: Optional[TextIO] = None,
                 md5: Optional[str] = None) -> Path:
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
    return _commit(staged, dest, sha256, where, out, md5)


# ---------------------------------------------------------------------------------------- archives
# ------------------------------------------------------------------------------------- high level
@dataclass(frozen=True)
class PlannedFile:
    entry: FileEntry
    kind: str       # "http" | "gdrive" | "folder"
    source: str     # URL, Drive id or local folder
    dest: Path
    root: Path = Path(".")      # the group's destination folder (a deb entry unpacks into it)
    upstream: bool = True       # the source serves the published form: ``md5`` and ``gunzip`` apply

    def describe(self) -> str:
        if self.kind == "gdrive":
            return f"https://drive.google.com/uc?id={self.source}"
        if self.kind == "folder":
            found = self.local()
            return str(found[0]) if found else f"{self.source} (no {posixpath.basename(self.entry.path)} there)"
        return self.source

    def local(self) -> Optional[tuple[Path, bool]]:
        """For a folder source: ``(file, is_gz)`` from ``DIR/<path>``, ``DIR/<basename>`` or
        ``DIR/<basename>.gz``, or None when the folder has none of them. A package is also found under
        the name apt gives a version with an epoch (``pkg_1%3a2.0-1_all.deb`` for pool's ``pkg_2.0-1_all.deb``)."""
        folder, base = Path(self.source), posixpath.basename(self.entry.path)
        tries = [(folder / self.entry.path, False), (folder / base, False)]
        if self.entry.deb and "_" in base:
            head, tail = base.split("_", 1)
            tries += [(f, False) for f in sorted(folder.glob(f"{glob.escape(head)}_*%3a{glob.escape(tail)}"))]
        elif not self.entry.deb:
            tries.append((folder / (base + ".gz"), True))
        return next(((f, gz) for f, gz in tries if f.is_file()), None)

    def staged(self) -> Path:
        """Where the fetched bytes land: ``<dest>.gz`` for a gunzip entry fetched upstream."""
        return self.dest.with_name(self.dest.name + ".gz") if self.entry.gunzip and self.upstream else self.dest


def _mirror_base(mirror: Optional[str]) -> str:
    return mirror if mirror else os.environ.get(MIRROR_ENV, "").strip()


def plan(group: Group, entries: Iterable[FileEntry], root: Optional[str | os.PathLike] = None,
         mirror: Optional[str] = None, url: Optional[str] = None,
         from_folder: Optional[str | os.PathLike] = None) -> list[PlannedFile]:
    """Where each entry comes from and goes to (nothing is fetched). ``from_folder`` beats every URL."""
    entries = list(entries)
    if url and len(entries) != 1:
        raise DownloadError(f"--url gives one file but the selection has {len(entries)}; pick one --name "
                            f"or use --mirror for several")
    if from_folder is not None and (url or mirror):
        raise DownloadError("--from-folder takes every file from that folder; drop --url / --mirror")
    if from_folder is not None and not Path(from_folder).is_dir():
        raise DownloadError(f"--from-folder {from_folder} is not a folder; pass the folder that holds the files "
                            f"(e.g. /usr/share/datasets/fashion-mnist or /var/cache/apt/archives)")
    base = Path(root) if root is not None else Path(group.root)
    out = []
    for e in entries:
        if from_folder is not None:
            out.append(PlannedFile(e, "folder", str(from_folder), base / e.path, base, upstream=False))
            continue
        kind, source = resolve_source(group, e, mirror, url)
        # a mirror holds the checkout layout (the decompressed file); only the entry's URL (or --url) is upstream
        out.append(PlannedFile(e, kind, source, base / e.path, base, upstream=bool(url) or not _mirror_base(mirror)))
    return out


def _marker(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.extracted")


def _write_marker(marker: Path, digest: str) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(digest + "\n")
    os.replace(tmp, marker)  # a marker is whole or absent: a kill never marks a half-unpacked package


def _unpacked(p: PlannedFile) -> bool:
    """A deb entry whose package was unpacked before (its marker holds the pinned digest)."""
    marker = _marker(p.dest)
    return marker.is_file() and (not p.entry.sha256 or marker.read_text().strip() == p.entry.sha256)


def _state(p: PlannedFile) -> str:
    part = p.staged().with_name(p.staged().name + ".part")
    if p.entry.deb and _unpacked(p):
        return "unpacked"
    if p.dest.exists():
        return "present"
    if p.kind == "folder":
        return "to copy" if p.local() else "missing in the folder"
    return f"partial {part.stat().st_size} B, resumes" if part.exists() else "to fetch"


def _dry_run(planned: list[PlannedFile], out: Optional[TextIO]) -> None:
    todo = 0
    for p in planned:
        state = _state(p)
        todo += state not in ("present", "unpacked")
        e = p.entry
        flags = "".join(f" [{flag}]" for flag, on in (
            ("sha256 pinned", e.sha256), ("md5 pinned", e.md5 and p.upstream), ("extract", e.extract),
            ("gunzip", e.gunzip and p.upstream), ("deb", e.deb)) if on)
        _say(f"{p.describe()} -> {p.dest} ({state}){flags}", out)
    _say(f"dry run: {len(planned)} file(s), {todo} to fetch", out)


def _fetch_to(p: PlannedFile, dest: Path, sha256: Optional[str], md5: Optional[str], net: dict,
              out: Optional[TextIO]) -> Path:
    """One download from ``p``'s URL or Drive id into ``dest``, verified against what is given."""
    if p.kind == "gdrive":
        net = {k: v for k, v in net.items() if k != "backoff"}
        return fetch_gdrive(p.source, dest, sha256, md5=md5, out=out, **net)
    return fetch(p.source, dest, sha256, md5=md5, out=out, **net)


def _stage_file(dest: Path) -> tuple[int, Path]:
    """A new temporary file next to ``dest`` with the permissions a plain ``open`` gives (the umask's:
    mkstemp's 0600 would make copied data files unreadable to other users, unlike fetched ones)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise DownloadError(f"cannot create a temporary file next to {dest}; clean up its folder")


def _copy_in(src: Path, dest: Path, sha256: Optional[str], gz: bool, out: Optional[TextIO]) -> Path:
    """Copy (or gunzip) ``src`` into a temporary file next to ``dest``, verify it, rename it to ``dest``."""
    fd, tmp = _stage_file(dest)
    try:
        with os.fdopen(fd, "wb") as f, (gzip.open(src, "rb") if gz else open(src, "rb")) as g:
            shutil.copyfileobj(g, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        tmp.unlink(missing_ok=True)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = "decompress" if gz else "copy"
        raise DownloadError(f"cannot {what} {src} into {dest} ({first}); if it is truncated, delete it and "
                            f"fetch it again") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _commit(tmp, dest, sha256, str(src), out)


def _missing_in_folder(p: PlannedFile) -> DownloadError:
    base = posixpath.basename(p.entry.path)
    alts = f"{p.entry.path}, {base}" + ("" if p.entry.deb else f" or {base}.gz")
    hint = ("apt-get download it there, or drop --from-folder" if p.entry.deb else
            "put it there or drop --from-folder to fetch it from its URL")
    return DownloadError(f"folder {p.source} has no {alts} for {p.dest}; {hint}")


def _obtain(p: PlannedFile, net: dict, out: Optional[TextIO]) -> None:
    """Bring one non-package file to ``p.dest``: fetched (and gunzipped), or copied from a folder."""
    e = p.entry
    if p.kind == "folder":
        found = p.local()
        if found is None:
            raise _missing_in_folder(p)
        _copy_in(found[0], p.dest, e.sha256, found[1], out)
        return
    if not (e.gunzip and p.upstream):
        _fetch_to(p, p.dest, e.sha256, e.md5 if p.upstream else None, net, out)
        return
    gz = p.staged()
    if not (gz.is_file() and (not e.md5 or _digests(gz)[1] == e.md5)):  # a .gz left by a killed gunzip is reused
        _fetch_to(p, gz, None, e.md5, net, out)
    try:
        _copy_in(gz, p.dest, e.sha256, True, out)
    finally:
        gz.unlink(missing_ok=True)  # done with, or bad: a re-run fetches it again


def _get_deb(p: PlannedFile, group: Group, net: dict, force: bool, out: Optional[TextIO]) -> None:
    """Fetch (or find) one package, verify it, unpack its ``deb_prefix`` files into the group's root."""
    from .debpkg import unpack_deb  # imported on use: only the fonts/icons groups need it

    e = p.entry
    if not force and _unpacked(p):
        _say(f"{p.dest.name} was already unpacked into {p.root}; skipped (--force unpacks it again)", out)
        return
    if p.kind == "folder":
        found = p.local()
        if found is None:
            raise _missing_in_folder(p)
        src, digest = found[0], sha256_file(found[0])
        if e.sha256 and digest != e.sha256:
            raise DownloadError(f"{src} is not the package the manifest pins for {e.name} (sha256 {digest}, expected "
                                f"{e.sha256}); fetch that version, or regenerate the entries with "
                                f"download/debian_entries.py")
    else:
        if force or not p.dest.is_file() or (e.sha256 and sha256_file(p.dest) != e.sha256):
            _say(f"fetching {p.dest} from {p.describe()}", out)
            _fetch_to(p, p.dest, e.sha256, e.md5 if p.upstream else None, net, out)
        src, digest = p.dest, sha256_file(p.dest)
    written, skipped = unpack_deb(src, p.root, group.deb_prefix or "")
    _write_marker(_marker(p.dest), digest)
    if src == p.dest:
        p.dest.unlink()  # its files are unpacked and the marker keeps its digest: the package is not needed
    note = f"; {skipped} link(s) leaving {group.deb_prefix} skipped" if skipped else ""
    _say(f"unpacked {len(written)} file(s) of {src.name} into {p.root}{note}", out)


def download_group(group: Group, names: Sequence[str] = ("all",), root: Optional[str | os.PathLike] = None,
                   mirror: Optional[str] = None, url: Optional[str] = None, *, retries: int = 3,
                   timeout: float = 60.0, backoff: float = 1.0, progress: Optional[bool] = None,
                   force: bool = False, dry_run: bool = False, out: Optional[TextIO] = None,
                   from_folder: Optional[str | os.PathLike] = None) -> list[Path]:
    """Fetch (and unpack) the selected files of ``group``; re-running skips what is already complete.

    A present file is kept when it matches its pinned sha256 (or none is pinned); ``force`` re-fetches.
    An archive is unpacked next to itself once; a hidden ``.<archive>.extracted`` marker holding the
    archive's digest makes re-runs skip it (a package's marker outlives the package, which is deleted
    once unpacked). ``from_folder`` takes every file from a local folder instead of its URL (module
    doc). Returns the final paths of the selected files.
    """
    planned = plan(group, group.select(names), root, mirror, url, from_folder)
    if dry_run:
        _dry_run(planned, out)
        return [p.dest for p in planned]
    net = dict(retries=retries, timeout=timeout, backoff=backoff, progress=progress)
    for p in planned:
        if p.entry.deb:
            _get_deb(p, group, net, force, out)
            continue
        fresh = force or not p.dest.exists()
        if not fresh and p.entry.sha256 and sha256_file(p.dest) != p.entry.sha256:
            _say(f"{p.dest} does not match its pinned sha256; fetching it again", out)
            fresh = True
        if fresh:
            _say(f"{'copying' if p.kind == 'folder' else 'fetching'} {p.dest} from {p.describe()}", out)
            _obtain(p, net, out)
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
_DESCRIPTIONS = {   # what each group fetches, as a noun phrase: the parser's description joins them
    "dataset": "the authors' datasets (numpy arrays, docs/method.md#benchmark) into data/<name>/, and "
               "Fashion-MNIST (by name: --name fashion_mnist) into data/fashion_mnist/",
    "checkpoint": "the authors' trained ResNet42 teachers into checkpoint/teacher/<task>/model_best.pth.tar",
    "preprocessed": "the authors' preprocessed meta-training database, unpacked (preprocessed/...)",
    "fonts": "the Debian font packages (their usr/share/fonts/ into data/sources/fonts/)",
    "icons": "the Debian icon-theme packages (their usr/share/icons/ into data/sources/icons/)",
}
_FROM_FOLDER_HELP = ("take every file from this folder instead of its URL: DIR/<path>, DIR/<basename> or "
                     "DIR/<basename>.gz, e.g. /usr/share/datasets/fashion-mnist (apt-get install "
                     "dataset-fashion-mnist) or /var/cache/apt/archives (.deb files from apt-get download)")


def _description(choices: Sequence[str]) -> str:
    parts = [_DESCRIPTIONS.get(c, f"the '{c}' files of the manifest") for c in choices]
    if len(parts) == 1:
        return f"Download {parts[0]}."
    return "Download, by --group: " + "; ".join(f"{c}: {d}" for c, d in zip(choices, parts)) + "."


def download_parser(group: str | Sequence[str], prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The download CLI of one group, or of several (then ``--group`` chooses, default all)."""
    choices = [group] if isinstance(group, str) else list(group)
    ap = argparse.ArgumentParser(
        prog=prog, description=_description(choices),
        epilog=f"Mirrors: set {MIRROR_ENV}=<base URL> (or --mirror) to fetch <base>/<root>/<path> for every file.")
    if len(choices) > 1:
        ap.add_argument("--group", choices=[*choices, "all"], default="all",
                        help=f"which group of the manifest ({', '.join(choices)} or all; default all)")
    ap.add_argument("--name", nargs="+", default=["all"],
                    help="what to fetch: 'all' or names from the manifest (see --dry-run); default all")
    ap.add_argument("--root", "--dir_path", dest="root", default=None,
                    help="destination folder (default: the manifest group's root)")
    ap.add_argument("--manifest", default=None, help=f"manifest file (default {DEFAULT_MANIFEST})")
    ap.add_argument("--mirror", default=None, help=f"base URL of a mirror (overrides ${MIRROR_ENV})")
    ap.add_argument("--from-folder", dest="from_folder", default=None, metavar="DIR", help=_FROM_FOLDER_HELP)
    ap.add_argument("--url", default=None, help="explicit URL for the one selected file")
    ap.add_argument("--dry-run", action="store_true", help="list what would be fetched, fetch nothing")
    ap.add_argument("--force", action="store_true", help="fetch again even if the file is present")
    ap.add_argument("--retries", type=int, default=3, help="extra attempts after a transient failure (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default 60)")
    ap.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each time")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _names_per_group(groups: list[Group], names: Sequence[str]) -> dict[str, list[str]]:
    """Which of ``names`` each group fetches; with one group it gets them all (its select() reports
    an unknown name)."""
    names = list(names) or ["all"]
    if len(groups) == 1 or "all" in names:
        return {g.name: names for g in groups}
    chosen: dict[str, list[str]] = {}
    for n in names:
        owners = [g for g in groups if n in g.names() or any(m.startswith(n + "-") for m in g.names())]
        if not owners:
            raise DownloadError(f"unknown --name '{n}' for {' / '.join(g.name for g in groups)}; choose from: all "
                                f"or a name that --dry-run lists")
        for g in owners:
            chosen.setdefault(g.name, []).append(n)
    return chosen


def _run_cli(args: argparse.Namespace, choices: Sequence[str]) -> None:
    groups = load_manifest(args.manifest)
    wanted = list(choices) if getattr(args, "group", "all") == "all" else [args.group]
    for g in wanted:
        if g not in groups:
            raise DownloadError(f"manifest {args.manifest or DEFAULT_MANIFEST} has no group '{g}'; "
                                f"it has: {', '.join(groups) or 'none'}")
    per_group = _names_per_group([groups[g] for g in wanted], args.name)
    if len(per_group) > 1 and (args.root or args.url):
        raise DownloadError(f"--root / --url apply to one group but the selection spans {', '.join(per_group)}; "
                            f"pick one with --group")
    for g, names in per_group.items():
        download_group(groups[g], names, args.root, args.mirror, args.url, retries=args.retries,
                       timeout=args.timeout, backoff=args.backoff, progress=False if args.no_progress else None,
                       force=args.force, dry_run=args.dry_run, from_folder=args.from_folder)


def main(group: str | Sequence[str], argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of the ``download/download_<what>.py`` scripts; returns the exit status. ``group`` is
    one manifest group, or several that ``--group`` chooses from (download_sources.py: fonts, icons)."""
    choices = [group] if isinstance(group, str) else list(group)
    args = download_parser(choices, prog).parse_args(argv)
    return run_reporting_errors(lambda: _run_cli(args, choices),
                                "error: interrupted; run the same command again to resume")
