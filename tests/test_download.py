"""dass.download and the three download CLIs, against a loopback HTTP server started by each test.

Nothing here touches the network: the server binds 127.0.0.1 on a free port, serves files from the
test's tmp_path, records every request (path, Range header, bytes sent), can drop a connection
mid-file, answer a fixed error status, ignore Range or stall; it stops at teardown (and by itself
after 60 s as a safety net).
"""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import types
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dass import download as dl
from dass.archives import safe_extract
from dass.errors import DassError, DownloadError

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "download"


# ------------------------------------------------------------------------------- loopback server
class LoopbackServer:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[dict] = []     # {"path", "range", "sent"}
        self.drop_after: dict[str, int] = {}   # url path -> bytes to send before dropping (once)
        self.status: dict[str, int] = {}       # url path -> error status answered every time
        self.stall: dict[str, float] = {}      # url path -> seconds to sleep before answering
        self.honour_range = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                rec = {"path": path, "range": self.headers.get("Range"), "sent": 0}
                server.requests.append(rec)
                if path in server.stall:
                    time.sleep(server.stall[path])
                if path in server.status:
                    self.send_error(server.status[path])
                    return
                f = (server.root / path.lstrip("/")).resolve()
                if not f.is_file() or server.root.resolve() not in f.parents:
                    self.send_error(404)
                    return
                data = f.read_bytes()
                start, code = 0, 200
                rng = self.headers.get("Range")
                if rng and server.honour_range and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    code = 206
                body = data[start:]
                self.send_response(code)
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_after.pop(path, None)
                if cut is not None:  # promise the whole body, send part of it, hang up
                    self.wfile.write(body[:cut])
                    rec["sent"] = cut
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)
                rec["sent"] = len(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.watchdog = threading.Timer(60.0, self.httpd.shutdown)
        self.watchdog.daemon = True

    @contextlib.contextmanager
    def serving(self):
        """Serve ``root`` on loopback until the block ends (the watchdog stops a forgotten server)."""
        self.thread.start()
        self.watchdog.start()
        try:
            yield self
        finally:
            self.watchdog.cancel()
            self.httpd.shutdown()
            self.httpd.server_close()

    def url(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def put(self, rel: str, data: bytes) -> bytes:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return data


@pytest.fixture
def server(tmp_path):
    srv = LoopbackServer(tmp_path / "served")
    srv.root.mkdir()
    with srv.serving():
        yield srv


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp", ".gdrive", ".extract")))


# ------------------------------------------------------------------------------------------ fetch
def test_full_download_with_sha256(server, tmp_path):
    data = server.put("a/blob.bin", payload(200_000))
    dest = tmp_path / "out" / "blob.bin"
    got = dl.fetch(server.url("a/blob.bin"), dest, sha(data), retries=0, progress=False)
    assert got == dest and dest.read_bytes() == data
    assert [r["range"] for r in server.requests] == [None]
    assert leftovers(tmp_path / "out") == []


def test_digest_printed_when_none_pinned(server, tmp_path, capsys):
    data = server.put("x.bin", payload(1000, seed=3))
    dl.fetch(server.url("x.bin"), tmp_path / "x.bin", retries=0, progress=False)
    assert f"sha256 {sha(data)}" in capsys.readouterr().out


def test_resume_of_partial_part_fetches_only_the_rest(server, tmp_path):
    data = server.put("big.bin", payload(150_000, seed=1))
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(data[:70_000])
    dl.fetch(server.url("big.bin"), dest, sha(data), retries=0, progress=True)  # bar starts at the offset
    assert dest.read_bytes() == data
    assert len(server.requests) == 1
    assert server.requests[0]["range"] == "bytes=70000-"
    assert server.requests[0]["sent"] == 150_000 - 70_000
    assert not (tmp_path / "big.bin.part").exists()


def test_dropped_connection_is_resumed(server, tmp_path):
    data = server.put("d.bin", payload(120_000, seed=2))
    server.drop_after["/d.bin"] = 50_000
    dest = tmp_path / "d.bin"
    dl.fetch(server.url("d.bin"), dest, sha(data), retries=2, backoff=0.0, progress=False)
    assert dest.read_bytes() == data
    assert [(r["range"], r["sent"]) for r in server.requests] == [(None, 50_000), ("bytes=50000-", 70_000)]


def test_dropped_connection_without_retries_keeps_part(server, tmp_path):
    data = server.put("d.bin", payload(60_000, seed=4))
    server.drop_after["/d.bin"] = 10_000
    dest = tmp_path / "d.bin"
    with pytest.raises(DownloadError) as ei:
        dl.fetch(server.url("d.bin"), dest, retries=0, progress=False)
    assert "10000 of 60000 bytes" in str(ei.value) and "re-run resumes" in str(ei.value)
    assert not dest.exists() and (tmp_path / "d.bin.part").read_bytes() == data[:10_000]
    dl.fetch(server.url("d.bin"), dest, sha(data), retries=0, progress=False)  # the re-run
    assert dest.read_bytes() == data and server.requests[-1]["range"] == "bytes=10000-"


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = server.put("r.bin", payload(30_000, seed=5))
    server.honour_range = False
    (tmp_path / "r.bin.part").write_bytes(b"garbage" * 100)
    dl.fetch(server.url("r.bin"), tmp_path / "r.bin", sha(data), retries=0, progress=False)
    assert (tmp_path / "r.bin").read_bytes() == data  # the garbage was not kept in front


def test_complete_part_finishes_on_416(server, tmp_path):
    data = server.put("c.bin", payload(5_000, seed=6))
    (tmp_path / "c.bin.part").write_bytes(data)
    dl.fetch(server.url("c.bin"), tmp_path / "c.bin", sha(data), retries=0, progress=False)
    assert (tmp_path / "c.bin").read_bytes() == data
    assert server.requests[0]["range"] == "bytes=5000-"


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    server.put("s.bin", payload(10_000, seed=7))
    dest = tmp_path / "s.bin"
    with pytest.raises(DownloadError) as ei:
        dl.fetch(server.url("s.bin"), dest, "0" * 64, retries=0, progress=False)
    msg = str(ei.value)
    assert "sha256 mismatch" in msg and server.url("s.bin") in msg and str(dest) in msg
    assert not dest.exists() and not (tmp_path / "s.bin.part").exists()


def test_404_is_one_line_naming_the_url_and_not_retried(server, tmp_path):
    url = server.url("missing/file.npy")
    with pytest.raises(DownloadError) as ei:
        dl.fetch(url, tmp_path / "file.npy", retries=3, backoff=0.0, progress=False)
    msg = str(ei.value)
    assert "\n" not in msg and "HTTP 404" in msg and url in msg and "file.npy" in msg
    assert len(server.requests) == 1
    assert isinstance(ei.value, DassError) and ei.value.exit_code == 2


def test_server_error_is_retried_then_fails(server, tmp_path):
    server.put("busy.bin", b"x")
    server.status["/busy.bin"] = 503
    with pytest.raises(DownloadError) as ei:
        dl.fetch(server.url("busy.bin"), tmp_path / "busy.bin", retries=2, backoff=0.0, progress=False)
    assert "after 3 attempt(s)" in str(ei.value) and "HTTP 503" in str(ei.value)
    assert len(server.requests) == 3
    assert not (tmp_path / "busy.bin").exists()


def test_connection_refused_after_retries(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    url = f"http://127.0.0.1:{port}/f.bin"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        dl.fetch(url, tmp_path / "f.bin", retries=2, backoff=0.05, progress=False)
    msg = str(ei.value)
    assert url in msg and "after 3 attempt(s)" in msg and "refused" in msg.lower()
    assert time.monotonic() - t0 >= 0.05 + 0.1  # the backoff really slept (0.05 then 0.1)


def test_stalled_server_times_out(server, tmp_path):
    server.put("slow.bin", b"abc")
    server.stall["/slow.bin"] = 1.5
    with pytest.raises(DownloadError) as ei:
        dl.fetch(server.url("slow.bin"), tmp_path / "slow.bin", retries=0, timeout=0.3, progress=False)
    assert "timed out" in str(ei.value)


# ----------------------------------------------------------------------------------- google drive
def _fake_gdown(monkeypatch, content: bytes | None, calls: list, exc: Exception | None = None):
    def download(id=None, output=None, quiet=False, resume=False, retries=0, timeout=None):
        calls.append({"id": id, "output": output, "resume": resume, "retries": retries})
        if exc is not None:
            raise exc
        if content is None:
            return None
        Path(output).write_bytes(content)
        return output
    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))


def test_gdrive_entry_goes_through_gdown_and_is_verified(monkeypatch, tmp_path):
    calls: list = []
    data = payload(3000, seed=8)
    _fake_gdown(monkeypatch, data, calls)
    dest = tmp_path / "ck" / "model_best.pth.tar"
    dl.fetch_gdrive("1AbC_d-9", dest, sha(data), retries=2, progress=False)
    assert dest.read_bytes() == data and leftovers(tmp_path) == []
    assert calls == [{"id": "1AbC_d-9", "output": str(dest) + ".gdrive", "resume": True, "retries": 2}]
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        dl.fetch_gdrive("1AbC_d-9", tmp_path / "bad.bin", "f" * 64, progress=False)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.gdrive").exists()


def test_gdrive_failure_is_one_line_naming_the_id(monkeypatch, tmp_path):
    _fake_gdown(monkeypatch, None, [], exc=RuntimeError("Too many users have viewed\nor downloaded"))
    with pytest.raises(DownloadError) as ei:
        dl.fetch_gdrive("XYZ", tmp_path / "f.bin", progress=False)
    assert "https://drive.google.com/uc?id=XYZ" in str(ei.value) and "\n" not in str(ei.value)
    _fake_gdown(monkeypatch, None, [])
    with pytest.raises(DownloadError, match="produced no file"):
        dl.fetch_gdrive("XYZ", tmp_path / "f.bin", progress=False)


# ----------------------------------------------------------------------------------------- archives
def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def make_tar(path: Path, members: dict[str, bytes], links: list[tuple[str, str, bytes]] = ()) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target, kind in links:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.linkname = target
            tf.addfile(ti)
    return path


def test_normal_zip_and_tar_are_extracted(tmp_path):
    files = {"preprocessed/ours/meta_train/a.pt": b"AAA", "preprocessed/search/cub.pt": b"BB", "top.txt": b"t"}
    for arc in (make_zip(tmp_path / "p.zip", files), make_tar(tmp_path / "p.tar.gz", files)):
        target = tmp_path / ("t_" + arc.name.replace(".", "_"))
        written = safe_extract(arc, target)
        assert sorted(p.relative_to(target).as_posix() for p in written) == sorted(files)
        for name, data in files.items():
            assert (target / name).read_bytes() == data
        assert [p.name for p in target.iterdir() if p.name.startswith(".")] == []  # staging folder removed


def test_tar_link_inside_the_folder_is_allowed(tmp_path):
    arc = make_tar(tmp_path / "ok.tar", {"d/real.txt": b"r"}, [("d/alias.txt", "real.txt", tarfile.SYMTYPE)])
    safe_extract(arc, tmp_path / "t")
    assert (tmp_path / "t" / "d" / "alias.txt").read_bytes() == b"r"


UNSAFE = {
    "zip_dotdot": lambda p: make_zip(p / "a.zip", {"ok.txt": b"1", "../evil.txt": b"x"}),
    "zip_absolute": lambda p: make_zip(p / "a.zip", {"ok.txt": b"1", "/tmp/dass_evil_abs.txt": b"x"}),
    "zip_backslash_dotdot": lambda p: make_zip(p / "a.zip", {"ok.txt": b"1", "sub\\..\\..\\evil.txt": b"x"}),
    "zip_symlink": lambda p: make_zip(p / "a.zip", {"ok.txt": b"1"}, {"link": "../../etc"}),
    "tar_dotdot": lambda p: make_tar(p / "a.tar.gz", {"ok.txt": b"1", "sub/../../evil.txt": b"x"}),
    "tar_absolute": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1", "/tmp/dass_evil_abs.txt": b"x"}),
    "tar_symlink_out": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1"}, [("l", "../outside", tarfile.SYMTYPE)]),
    "tar_symlink_abs": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1"}, [("l", "/etc/passwd", tarfile.SYMTYPE)]),
    "tar_hardlink_out": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1"}, [("h", "../x", tarfile.LNKTYPE)]),
    "tar_through_link": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1"},
                                           [("l", "sub", tarfile.SYMTYPE), ("l/f", "ok.txt", tarfile.LNKTYPE)]),
    "tar_device": lambda p: make_tar(p / "a.tar", {"ok.txt": b"1"}, [("dev", "", tarfile.CHRTYPE)]),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_member_refuses_everything(tmp_path, case):
    src = tmp_path / "src"
    src.mkdir()
    arc = UNSAFE[case](src)
    target = tmp_path / "work" / "target"
    with pytest.raises(DownloadError) as ei:
        safe_extract(arc, target)
    assert str(arc) in str(ei.value) and "refusing" in str(ei.value) and "\n" not in str(ei.value)
    assert list(target.iterdir()) == []                    # not even the safe member
    assert not (tmp_path / "work" / "evil.txt").exists()
    assert not Path("/tmp/dass_evil_abs.txt").exists()


def test_corrupt_archive_is_a_one_line_error(tmp_path):
    arc = tmp_path / "bad.zip"
    arc.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DownloadError, match="corrupt"):
        safe_extract(arc, tmp_path / "t")


# ------------------------------------------------------------------------------ manifest & groups
def write_manifest(path: Path, groups: dict) -> Path:
    import yaml
    path.write_text(yaml.safe_dump({"version": 1, "groups": groups}))
    return path


def test_authors_manifest_lists_their_files():
    groups = dl.load_manifest()
    ds, ck, pre = groups["dataset"], groups["checkpoint"], groups["preprocessed"]
    assert ds.root == "data" and ck.root == "checkpoint/teacher" and pre.root == "."
    assert ds.names() == ["tiny_imagenet", "cub", "dtd", "quickdraw", "stanford_cars", "fashion_mnist"]
    assert len(ds.select(["tiny_imagenet"])) == 14 and len(ds.files) == 14 + 4 * 4 + 4
    assert len(ds.select(["all"])) == 14 + 4 * 4  # all = the authors' release; Fashion-MNIST only by name
    assert len(ds.select(["all", "fashion_mnist"])) == 14 + 4 * 4 + 4
    assert {f.path for f in ds.select(["dtd"])} == {f"dtd/{s}_{k}.npy" for s in ("train", "test")
                                                     for k in ("images", "labels")}
    assert [f.path for f in ck.select(["tiny_imagenet"])] == [f"tiny_imagenet-{k}/model_best.pth.tar"
                                                             for k in range(10)]
    assert len(ck.files) == 14 and all(f.path.endswith("/model_best.pth.tar") for f in ck.files)
    assert [(f.path, f.extract) for f in pre.files] == [("preprocessed.zip", True)]
    assert ds.mirror_path(ds.files[0]) == "data/tiny_imagenet/train_images.npy"
    assert pre.mirror_path(pre.files[0]) == "preprocessed.zip"
    with pytest.raises(DownloadError, match="unknown --name 'imagenet'.*choose from: all, tiny_imagenet"):
        ds.select(["imagenet"])


@pytest.mark.parametrize("entry,match", [
    ({"name": "a", "path": "../x", "url": "http://h/x"}, "without '..'"),
    ({"name": "a", "path": "/abs/x", "url": "http://h/x"}, "without '..'"),
    ({"name": "a", "path": "x", "url": "http://h/x", "gdrive": "abc"}, "exactly one of"),
    ({"name": "a", "path": "x"}, "exactly one of"),
    ({"name": "a", "path": "x", "url": "not a url"}, "is not a URL"),
    ({"name": "a", "path": "x", "url": "http://h/x", "sha256": "abc"}, "64 hex digits"),
    ({"name": "a", "path": "x", "url": "http://h/x", "sha1": "abc"}, "unknown key"),
    ({"name": "a", "path": "x", "url": "http://h/x", "md5": "abc"}, "32 hex digits"),
    ({"name": "a", "path": "x", "url": "http://h/x", "gunzip": "yes"}, "true or false"),
    ({"name": "a", "path": "x", "url": "http://h/x", "gunzip": True, "extract": True}, "only one of"),
    ({"name": "a", "path": "x.deb", "url": "http://h/x", "deb": True}, "no 'deb_prefix:'"),
    ({"name": "all", "path": "x", "url": "http://h/x"}, "other than 'all'"),
])
def test_bad_manifest_entries_are_refused(tmp_path, entry, match):
    m = write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [entry]}})
    with pytest.raises(DownloadError, match=match) as ei:
        dl.load_manifest(m)
    assert str(m) in str(ei.value)


def test_missing_or_broken_manifest(tmp_path):
    with pytest.raises(DownloadError, match="does not exist"):
        dl.load_manifest(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_text("groups: [unclosed")
    with pytest.raises(DownloadError, match="not valid YAML"):
        dl.load_manifest(tmp_path / "b.yaml")


def test_mirror_precedence(monkeypatch):
    g = dl.Group("dataset", "data", (dl.FileEntry("cub", "cub/train images.npy", url="https://orig/x"),
                                     dl.FileEntry("d", "d/y.npy", gdrive="ID1")))
    cub, drv = g.files
    assert dl.resolve_source(g, cub) == ("http", "https://orig/x")
    assert dl.resolve_source(g, drv) == ("gdrive", "ID1")
    monkeypatch.setenv(dl.MIRROR_ENV, "http://env.mirror/base/")
    assert dl.resolve_source(g, cub) == ("http", "http://env.mirror/base/data/cub/train%20images.npy")
    assert dl.resolve_source(g, drv) == ("http", "http://env.mirror/base/data/d/y.npy")  # mirror beats Drive
    assert dl.resolve_source(g, cub, mirror="http://flag") == ("http", "http://flag/data/cub/train%20images.npy")
    assert dl.resolve_source(g, cub, mirror="http://flag", url="http://one/f") == ("http", "http://one/f")
    monkeypatch.setenv(dl.MIRROR_ENV, "mirror.example.org")
    with pytest.raises(DownloadError, match="DASS_MIRROR"):
        dl.resolve_source(g, cub)


def test_env_mirror_download_group_and_rerun(server, tmp_path, monkeypatch):
    a = server.put("data/toy/a.npy", payload(4000, seed=9))
    b = server.put("data/toy/sub/b.npy", payload(2500, seed=10))
    m = write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [
        {"name": "toy", "path": "toy/a.npy", "url": "http://127.0.0.1:9/unreachable/a.npy", "sha256": sha(a)},
        {"name": "toy", "path": "toy/sub/b.npy", "url": "http://127.0.0.1:9/unreachable/b.npy"},
        {"name": "other", "path": "other/c.npy", "url": "http://127.0.0.1:9/unreachable/c.npy"}]}})
    monkeypatch.setenv(dl.MIRROR_ENV, server.base)
    group = dl.load_manifest(m)["dataset"]
    out = io.StringIO()
    got = dl.download_group(group, ["toy"], tmp_path / "local", retries=0, progress=False, out=out)
    assert got == [tmp_path / "local/toy/a.npy", tmp_path / "local/toy/sub/b.npy"]
    assert got[0].read_bytes() == a and got[1].read_bytes() == b
    assert [r["path"] for r in server.requests] == ["/data/toy/a.npy", "/data/toy/sub/b.npy"]
    assert f"sha256 {sha(b)}" in out.getvalue()  # b has no pinned digest: printed
    dl.download_group(group, ["toy"], tmp_path / "local", retries=0, progress=False, out=io.StringIO())
    assert len(server.requests) == 2  # everything present: nothing fetched again
    got[0].write_bytes(b"tampered")   # a pinned digest that no longer matches is fetched again
    dl.download_group(group, ["toy"], tmp_path / "local", retries=0, progress=False, out=io.StringIO())
    assert got[0].read_bytes() == a and len(server.requests) == 3


def test_archive_group_extracts_once(server, tmp_path):
    zbytes = make_zip(tmp_path / "src.zip", {"preprocessed/search/cub.pt": b"CUB"}).read_bytes()
    server.put("preprocessed.zip", zbytes)
    m = write_manifest(tmp_path / "m.yaml", {"preprocessed": {"root": ".", "files": [
        {"name": "preprocessed", "path": "preprocessed.zip", "url": server.url("preprocessed.zip"),
         "sha256": sha(zbytes), "extract": True}]}})
    group = dl.load_manifest(m)["preprocessed"]
    root = tmp_path / "repo"
    out = io.StringIO()
    dl.download_group(group, root=root, progress=False, out=out)
    assert (root / "preprocessed/search/cub.pt").read_bytes() == b"CUB"
    (root / "preprocessed/search/cub.pt").write_bytes(b"edited")
    out = io.StringIO()
    dl.download_group(group, root=root, progress=False, out=out)
    assert "already extracted" in out.getvalue() and len(server.requests) == 1
    assert (root / "preprocessed/search/cub.pt").read_bytes() == b"edited"  # a re-run does not clobber


def test_file_mirror_and_missing_file_fail_fast(tmp_path, monkeypatch):
    (tmp_path / "m/data/cub").mkdir(parents=True)
    (tmp_path / "m/data/cub/x.npy").write_bytes(b"xyz")
    g = dl.Group("dataset", "data", (dl.FileEntry("cub", "cub/x.npy", url="https://unused/x"),
                                     dl.FileEntry("dtd", "dtd/y.npy", url="https://unused/y")))
    monkeypatch.setenv(dl.MIRROR_ENV, (tmp_path / "m").as_uri())
    dl.download_group(g, ["cub"], tmp_path / "out", progress=False, out=io.StringIO())
    assert (tmp_path / "out/cub/x.npy").read_bytes() == b"xyz"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="No such file.*dtd/y.npy.*check the URL"):
        dl.download_group(g, ["dtd"], tmp_path / "out", retries=3, backoff=1.0, progress=False, out=io.StringIO())
    assert time.monotonic() - t0 < 0.9  # not retried: no backoff sleep happened


def test_url_flag_needs_exactly_one_file():
    g = dl.load_manifest()["dataset"]
    with pytest.raises(DownloadError, match="--url gives one file but the selection has 4"):
        dl.plan(g, g.select(["cub"]), url="http://x/y")


# --------------------------------------------------------------------------------------------- CLIs
def run_cli(script: str, *args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != dl.MIRROR_ENV}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.slow
def test_clis_dry_run_with_the_authors_manifest(tmp_path):
    r = run_cli("download_dataset.py", "--name", "cub", "quickdraw", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "https://www.dropbox.com/s/kxjc6e6io0cvzmt/train_images.npy?dl=1 -> data/cub/train_images.npy" in r.stdout
    assert "dry run: 8 file(s), 8 to fetch" in r.stdout
    r = run_cli("download_checkpoint.py", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and "checkpoint/teacher/tiny_imagenet-9/model_best.pth.tar" in r.stdout
    assert "dry run: 14 file(s)" in r.stdout
    r = run_cli("download_preprocessed.py", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and "-> preprocessed.zip (to fetch) [extract]" in r.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run creates nothing


@pytest.mark.slow
def test_cli_real_runs_against_loopback(server, tmp_path):
    imgs = server.put("toy/train_images.npy", payload(9000, seed=11))
    zbytes = make_zip(tmp_path / "z.zip", {"preprocessed/ours/meta_train/t.pt": b"T"}).read_bytes()
    server.put("pre/preprocessed.zip", zbytes)
    m = write_manifest(tmp_path / "m.yaml", {
        "dataset": {"root": "data", "files": [
            {"name": "toy", "path": "toy/train_images.npy", "url": server.url("toy/train_images.npy"),
             "sha256": sha(imgs)}]},
        "preprocessed": {"root": ".", "files": [
            {"name": "preprocessed", "path": "preprocessed.zip", "url": server.url("pre/preprocessed.zip"),
             "extract": True}]}})
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli("download_dataset.py", "--manifest", str(m), "--name", "all", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "data/toy/train_images.npy").read_bytes() == imgs
    r = run_cli("download_preprocessed.py", "--manifest", str(m), cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "preprocessed/ours/meta_train/t.pt").read_bytes() == b"T"
    assert f"sha256 {sha(zbytes)}" in r.stdout


@pytest.mark.slow
def test_cli_checkpoint_from_env_mirror(server, tmp_path):
    ck = server.put("checkpoint/teacher/cub/model_best.pth.tar", payload(7000, seed=12))
    r = run_cli("download_checkpoint.py", "--name", "cub", "--root", "teachers", cwd=tmp_path,
                env_extra={dl.MIRROR_ENV: server.base})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "teachers/cub/model_best.pth.tar").read_bytes() == ck
    assert [q["path"] for q in server.requests] == ["/checkpoint/teacher/cub/model_best.pth.tar"]


@pytest.mark.slow
def test_cli_errors_exit_2_with_one_line(server, tmp_path):
    m = write_manifest(tmp_path / "m.yaml", {
        "dataset": {"root": "data", "files": [{"name": "gone", "path": "gone/x.npy", "url": server.url("nope.npy")}]},
        "preprocessed": {"root": ".", "files": [
            {"name": "preprocessed", "path": "evil.zip", "url": server.url("evil.zip"), "extract": True}]}})
    r = run_cli("download_dataset.py", "--manifest", str(m), "--retries", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: HTTP 404")
    assert server.url("nope.npy") in r.stderr and "gone/x.npy" in r.stderr
    server.put("evil.zip", make_zip(tmp_path / "e.zip", {"fine.txt": b"1", "../../evil.txt": b"x"}).read_bytes())
    work = tmp_path / "w"
    r = run_cli("download_preprocessed.py", "--manifest", str(m), "--root", str(work / "r"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unsafe member '../../evil.txt'" in r.stderr
    assert sorted(p.name for p in (work / "r").iterdir()) == ["evil.zip"]  # nothing extracted
    r = run_cli("download_dataset.py", "--name", "imagenet", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown --name 'imagenet'")


# ------------------------------------------------------------------ gunzip entries, md5, --from-folder
def gz(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data, mtime=0)


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_gunzip_entry_is_fetched_as_gz_checked_by_md5_and_decompressed(server, tmp_path):
    idx = payload(30_000, seed=20)
    packed = server.put("up/train-images-idx3-ubyte.gz", gz(idx))
    entry = {"name": "fm", "path": "fm/train-images-idx3-ubyte", "url": server.url("up/train-images-idx3-ubyte.gz"),
             "gunzip": True, "md5": md5(packed), "sha256": sha(idx)}
    group = dl.load_manifest(write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [entry]}}))
    out = io.StringIO()
    got = dl.download_group(group["dataset"], ["fm"], tmp_path / "d", retries=0, progress=False, out=out)
    assert got == [tmp_path / "d/fm/train-images-idx3-ubyte"] and got[0].read_bytes() == idx
    assert sorted(p.name for p in (tmp_path / "d/fm").iterdir()) == ["train-images-idx3-ubyte"]  # .gz removed
    assert "no digest pinned" not in out.getvalue()
    dl.download_group(group["dataset"], ["fm"], tmp_path / "d", retries=0, progress=False, out=io.StringIO())
    assert len(server.requests) == 1  # present and matching its sha256: not fetched again


def test_wrong_md5_is_an_error_and_leaves_nothing(server, tmp_path):
    packed = server.put("x.gz", gz(b"idx bytes"))
    entry = {"name": "fm", "path": "fm/x", "url": server.url("x.gz"), "gunzip": True, "md5": "0" * 32}
    group = dl.load_manifest(write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [entry]}}))
    with pytest.raises(DownloadError) as ei:
        dl.download_group(group["dataset"], ["fm"], tmp_path / "d", retries=0, progress=False, out=io.StringIO())
    msg = str(ei.value)
    assert "md5 mismatch" in msg and md5(packed) in msg and server.url("x.gz") in msg and "\n" not in msg
    assert list((tmp_path / "d/fm").iterdir()) == []  # neither x, x.gz nor a .part


def test_gunzip_entry_from_a_mirror_is_the_decompressed_file(server, tmp_path):
    idx = server.put("data/fm/x", payload(5000, seed=21))  # a mirror holds the checkout layout
    entry = {"name": "fm", "path": "fm/x", "url": "http://127.0.0.1:9/x.gz", "gunzip": True, "md5": "0" * 32,
             "sha256": sha(idx)}
    group = dl.load_manifest(write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [entry]}}))
    dl.download_group(group["dataset"], ["fm"], tmp_path / "d", mirror=server.base, retries=0, progress=False,
                      out=io.StringIO())
    assert (tmp_path / "d/fm/x").read_bytes() == idx  # no md5 (it pins the upstream .gz), no gunzip


def folder_group(tmp_path: Path, entries: list[dict]) -> dl.Group:
    return dl.load_manifest(write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": entries}}))[
        "dataset"]


def test_from_folder_takes_plain_files_and_gz_files(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    a, b = payload(3000, seed=22), payload(4000, seed=23)
    (folder / "a-idx").write_bytes(a)               # by basename
    (folder / "b-idx.gz").write_bytes(gz(b))        # only the .gz: gunzipped
    group = folder_group(tmp_path, [
        {"name": "fm", "path": "fm/a-idx", "url": "http://127.0.0.1:9/a.gz", "gunzip": True, "md5": "0" * 32,
         "sha256": sha(a)},
        {"name": "fm", "path": "fm/b-idx", "url": "http://127.0.0.1:9/b.gz", "gunzip": True, "sha256": sha(b)}])
    got = dl.download_group(group, ["fm"], tmp_path / "d", from_folder=folder, progress=False, out=io.StringIO())
    assert [p.read_bytes() for p in got] == [a, b]  # the md5 of the upstream .gz is not asked of a folder
    assert leftovers(tmp_path / "d") == [] and (folder / "b-idx.gz").exists()  # the folder is left as it was
    out = io.StringIO()
    dl.download_group(group, ["fm"], tmp_path / "d", from_folder=folder, dry_run=True, out=out)
    assert "(present)" in out.getvalue() and "0 to fetch" in out.getvalue()


def test_from_folder_checks_sha256_and_names_a_missing_file(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "a").write_bytes(b"not what was pinned")
    group = folder_group(tmp_path, [{"name": "a", "path": "x/a", "url": "http://127.0.0.1:9/a", "sha256": "f" * 64},
                                    {"name": "c", "path": "x/c", "url": "http://127.0.0.1:9/c"}])
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        dl.download_group(group, ["a"], tmp_path / "d", from_folder=folder, progress=False, out=io.StringIO())
    assert list((tmp_path / "d/x").iterdir()) == []
    with pytest.raises(DownloadError) as ei:
        dl.download_group(group, ["c"], tmp_path / "d", from_folder=folder, progress=False, out=io.StringIO())
    msg = str(ei.value)
    assert f"folder {folder} has no x/c, c or c.gz" in msg and "\n" not in msg
    with pytest.raises(DownloadError, match="is not a folder"):
        dl.download_group(group, ["c"], tmp_path / "d", from_folder=tmp_path / "nope", out=io.StringIO())
    with pytest.raises(DownloadError, match="drop --url / --mirror"):
        dl.download_group(group, ["c"], tmp_path / "d", mirror="http://m", from_folder=folder, out=io.StringIO())


@pytest.mark.slow
def test_cli_from_folder(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    data = payload(2000, seed=24)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(data))
    m = write_manifest(tmp_path / "m.yaml", {"dataset": {"root": "data", "files": [
        {"name": "fm", "path": "fashion_mnist/t10k-labels-idx1-ubyte", "url": "http://127.0.0.1:9/x.gz",
         "gunzip": True, "sha256": sha(data)}]}})
    work = tmp_path / "w"
    work.mkdir()
    r = run_cli("download_dataset.py", "--manifest", str(m), "--name", "fm", "--from-folder", str(folder), cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "data/fashion_mnist/t10k-labels-idx1-ubyte").read_bytes() == data
    r = run_cli("download_dataset.py", "--manifest", str(m), "--from-folder", str(tmp_path / "empty"), cwd=work)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not a folder" in r.stderr


@pytest.mark.slow
def test_fashion_mnist_entries_and_dry_run(tmp_path):
    fm = dl.load_manifest()["dataset"].select(["fashion_mnist"])
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert [f.path for f in fm] == [f"fashion_mnist/{n}" for n in names]
    assert all(f.gunzip and f.optional and f.md5 and f.sha256 for f in fm)
    assert fm[0].md5 == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert fm[3].sha256 == "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    r = run_cli("download_dataset.py", "--name", "fashion_mnist", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for n in names:
        assert (f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{n}.gz -> data/fashion_mnist/{n} "
                f"(to fetch) [sha256 pinned] [md5 pinned] [gunzip]") in r.stdout
    assert "dry run: 4 file(s), 4 to fetch" in r.stdout and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- Debian packages
def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def tar_xz(files: dict[str, bytes], links: list[tuple[str, str]] = (), dirs: list[str] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in links:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return buf.getvalue()


FONT = b"\x00\x01\x00\x00 a tiny pretend font"
FONT_DIR = "./usr/share/fonts/truetype/x"


def make_deb(files: dict[str, bytes], links: list[tuple[str, str]] = ()) -> bytes:
    dirs = ["./", "./usr/", "./usr/share/", "./usr/share/fonts/", "./usr/share/fonts/truetype/", FONT_DIR + "/"]
    return ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz({"./control": b"Package: x\n"})),
                       ("data.tar.xz", tar_xz(files, links, dirs))])


def fonts_manifest(tmp_path: Path, deb_bytes: bytes, url: str, name: str = "fonts-x") -> dl.Group:
    entry = {"name": name, "path": f"{name}_1.0-1_all.deb", "url": url, "sha256": sha(deb_bytes), "deb": True}
    m = write_manifest(tmp_path / "m.yaml", {"fonts": {"root": "data/sources/fonts", "deb_prefix": "usr/share/fonts",
                                                        "files": [entry]}})
    return dl.load_manifest(m)["fonts"]


def good_deb() -> bytes:
    return make_deb({f"{FONT_DIR}/X.ttf": FONT, "./usr/share/doc/fonts-x/copyright": b"GPL"},
                    [(f"{FONT_DIR}/Y.ttf", "X.ttf"),                                    # inside: kept
                     (f"{FONT_DIR}/W.ttf", "/usr/share/fonts/truetype/x/X.ttf"),        # absolute, inside: relative
                     (f"{FONT_DIR}/Z.ttf", "../../../doc/fonts-x/copyright"),           # leaves the prefix: skipped
                     ("./usr/share/doc/fonts-x/link", "copyright")])                    # outside the prefix anyway


def test_deb_is_fetched_verified_unpacked_and_skipped_on_rerun(server, tmp_path):
    deb = server.put("pool/f/fonts-x_1.0-1_all.deb", good_deb())
    group = fonts_manifest(tmp_path, deb, server.url("pool/f/fonts-x_1.0-1_all.deb"))
    root = tmp_path / "fonts"
    out = io.StringIO()
    dl.download_group(group, root=root, retries=0, progress=False, out=out)
    x = root / "truetype/x"
    assert (x / "X.ttf").read_bytes() == FONT and (x / "Y.ttf").read_bytes() == FONT
    assert os.readlink(x / "Y.ttf") == "X.ttf" and os.readlink(x / "W.ttf") == "X.ttf"
    assert not os.path.lexists(x / "Z.ttf") and not (root / "doc").exists() and not (root / "usr").exists()
    assert "1 link(s) leaving usr/share/fonts skipped" in out.getvalue()
    assert sorted(p.name for p in root.iterdir()) == [".fonts-x_1.0-1_all.deb.extracted", "truetype"]  # .deb gone
    assert (root / ".fonts-x_1.0-1_all.deb.extracted").read_text().strip() == sha(deb)
    (x / "X.ttf").write_bytes(b"edited")
    out = io.StringIO()
    dl.download_group(group, root=root, retries=0, progress=False, out=out)
    assert "already unpacked" in out.getvalue() and len(server.requests) == 1
    assert (x / "X.ttf").read_bytes() == b"edited"  # a re-run neither downloads nor clobbers


def test_deb_with_an_unsafe_member_is_refused_whole(server, tmp_path):
    evil = make_deb({f"{FONT_DIR}/X.ttf": FONT, "../evil": b"x"})
    server.put("evil.deb", evil)
    group = fonts_manifest(tmp_path, evil, server.url("evil.deb"))
    root = tmp_path / "w" / "fonts"
    with pytest.raises(DownloadError) as ei:
        dl.download_group(group, root=root, retries=0, progress=False, out=io.StringIO())
    assert "unsafe member '../evil'" in str(ei.value) and "refusing" in str(ei.value) and "\n" not in str(ei.value)
    assert sorted(p.name for p in root.iterdir()) == ["fonts-x_1.0-1_all.deb"]  # nothing unpacked, no marker
    assert not (tmp_path / "w" / "evil").exists()


def test_deb_with_a_device_or_a_bad_container_is_refused(tmp_path):
    from dass.debpkg import select_members, unpack_deb

    dev = tarfile.TarInfo("./usr/share/fonts/dev")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(DownloadError, match="device"):
        select_members([dev], "usr/share/fonts", tmp_path / "p.deb")
    bad = tmp_path / "bad.deb"
    bad.write_bytes(good_deb()[:300])
    with pytest.raises(DownloadError, match="truncated"):
        unpack_deb(bad, tmp_path / "t", "usr/share/fonts")
    (tmp_path / "plain.deb").write_bytes(b"PK not a deb")
    with pytest.raises(DownloadError, match="not a Debian package"):
        unpack_deb(tmp_path / "plain.deb", tmp_path / "t", "usr/share/fonts")


@pytest.mark.slow
def test_cli_sources_from_an_apt_archive_folder(tmp_path):
    deb = good_deb()
    folder = tmp_path / "archives"
    folder.mkdir()
    (folder / "fonts-x_1%3a1.0-1_all.deb").write_bytes(deb)  # apt's name for a version with an epoch
    group = {"root": "data/sources/fonts", "deb_prefix": "usr/share/fonts", "files": [
        {"name": "fonts-x", "path": "fonts-x_1.0-1_all.deb", "url": "http://127.0.0.1:9/x.deb", "sha256": sha(deb),
         "deb": True}]}
    m = write_manifest(tmp_path / "m.yaml", {"fonts": group, "icons": {**group, "deb_prefix": "usr/share/icons",
                                                                       "root": "data/sources/icons"}})
    work = tmp_path / "w"
    work.mkdir()
    r = run_cli("download_sources.py", "--manifest", str(m), "--group", "fonts", "--from-folder", str(folder),
                cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "data/sources/fonts/truetype/x/X.ttf").read_bytes() == FONT
    assert (folder / "fonts-x_1%3a1.0-1_all.deb").exists()  # a folder's package is read in place, not moved
    assert not (work / "data/sources/icons").exists()
    r = run_cli("download_sources.py", "--manifest", str(m), "--dry-run", cwd=work)
    assert r.returncode == 0 and "(unpacked) [sha256 pinned] [deb]" in r.stdout
    assert "dry run: 1 file(s), 0 to fetch" in r.stdout and "dry run: 1 file(s), 1 to fetch" in r.stdout  # fonts, icons
    r = run_cli("download_sources.py", "--manifest", str(m), "--name", "nope", "--dry-run", cwd=work)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown --name 'nope' for fonts / icons")


def test_debian_entries_match_the_manifest():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import debian_entries as de
    finally:
        sys.path.remove(str(SCRIPTS))
    groups = dl.load_manifest()
    for gname, pkgs in de.GROUPS.items():
        g = groups[gname]
        assert g.names() == pkgs and g.deb_prefix == f"usr/share/{gname}" and g.root == f"data/sources/{gname}"
        assert all(f.deb and f.sha256 and f.url.startswith(de.POOL_URL + "pool/") for f in g.files)
        assert all(f.url.endswith("/" + f.path) for f in g.files)
    stanza = ("Package: fonts-x\nVersion: 1:1.0-1\nFilename: pool/main/f/fonts-x/fonts-x_1.0-1_all.deb\n"
              "Description: x\n more\nSHA256: " + "ab" * 32 + "\n\nPackage: fonts-x\nVersion: 0.9\n")
    fields = de.parse_stanza(stanza)
    assert fields["Version"] == "1:1.0-1"
    line = de.entry_line("fonts-x", fields)
    assert line.strip() == ('- {name: fonts-x, path: fonts-x_1.0-1_all.deb, url: "http://deb.debian.org/debian/'
                            'pool/main/f/fonts-x/fonts-x_1.0-1_all.deb", sha256: ' + "ab" * 32 + ", deb: true}")
