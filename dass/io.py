"""Files: atomic writes, safe checkpoint loading, JSON-lines metrics, CSV summaries.

Everything long-running writes through these helpers so that a kill (or a full disk) never leaves a
half-written file under its final name: we write to a temporary file in the same folder, fsync, and
``os.replace`` it into place. A failed write removes its temporary file and re-raises.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml

from .errors import CheckpointError, DassError


def _atomic(path: str | os.PathLike, writer: Callable[[Any], None], mode: str = "wb") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks (large files never sit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data), "wb")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename: a killed save leaves the old file intact."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | os.PathLike, allow_pickle: bool = False, what: str = "checkpoint",
                    map_location: Any = "cpu") -> Any:
    """Load a torch file with ``weights_only=True`` unless the user opted in to legacy pickles.

    Missing, truncated or corrupt files raise a one-line :class:`CheckpointError` naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p} does not exist; check the path or re-run the step that writes it")
    try:
        return torch.load(p, map_location=map_location, weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        # weights_only refuses both garbage and legitimate pickled objects; only the latter names a global.
        if not allow_pickle and "global" in str(e).lower():
            raise CheckpointError(
                f"{what} {p} holds Python objects that weights_only loading refuses; if you trust it (e.g. the "
                f"authors' release) pass run.allow_legacy_pickle=true") from None
        raise CheckpointError(f"{what} {p} is corrupt ({e}); delete it and re-create or re-download it") from None
    except Exception as e:  # a corrupt file can fail anywhere inside the unpickler (IndexError, KeyError, ...)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{what} {p} is corrupt or unreadable ({msg}); delete it and re-create or "
                              f"re-download it") from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record per line (append-only metrics log). Flushed and fsynced per record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, default=_json_default) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines log, ignoring a torn last line left by a kill."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn final line from a kill: drop it
            raise
    return out


def truncate_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
    """Rewrite a metrics log keeping only records for which ``keep`` is true (used on resume)."""
    path = Path(path)
    if not path.is_file():
        return
    recs = [r for r in read_jsonl(path) if keep(r)]
    atomic_write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in recs))


def append_csv_row(path: str | os.PathLike, row: dict) -> None:
    """Append a row to a CSV summary, writing the header when the file is new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def write_csv(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise DassError(f"{what} {p} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DassError(f"{what} {p} is not valid JSON (line {e.lineno}); delete it and re-create it") from None


# --------------------------------------------------------------------------------------------- #
# the authors' YAML (obtained_net_index.yaml)
# --------------------------------------------------------------------------------------------- #

_DEFAULTDICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.defaultdict"
_FACTORY_TAGS = {f"tag:yaml.org,2002:python/name:builtins.{n}" for n in ("dict", "list", "int", "float", "str")}


class _AuthorsYamlLoader(yaml.SafeLoader):
    """The safe loader plus exactly one tag: the ``collections.defaultdict`` that ``yaml.dump`` writes for the
    authors' ``obtained_net_index.yaml`` (docs/method.md#file-formats). It becomes a plain dict; its default
    factory is checked by name, never imported or called."""


def _construct_defaultdict(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, "a defaultdict must be a mapping", node.start_mark)
    items: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_scalar(key_node)
        if key == "dictitems":
            items = loader.construct_mapping(value_node, deep=True)
        elif key == "args":
            factories = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            bad = [f.tag for f in factories if f.tag not in _FACTORY_TAGS]
            if bad:
                raise yaml.constructor.ConstructorError(None, None, f"unsupported tag {bad[0]!r}", value_node.start_mark)
        else:
            raise yaml.constructor.ConstructorError(None, None, f"unsupported tag {key!r}", key_node.start_mark)
    return dict(items)


_AuthorsYamlLoader.add_constructor(_DEFAULTDICT_TAG, _construct_defaultdict)


def read_authors_yaml(path: str | os.PathLike, what: str = "file", fix: str = "re-create it") -> Any:
    """A YAML file that may carry the authors' ``defaultdict`` tag; any other Python tag is refused."""
    from .errors import DassError

    p = Path(path)
    if not p.is_file():
        raise DassError(f"{what} {p} does not exist; {fix}")
    try:
        return yaml.load(p.read_text(), Loader=_AuthorsYamlLoader)
    except yaml.constructor.ConstructorError as e:
        raise DassError(f"{what} {p} holds a YAML tag that is not read ({e.problem}); only the authors' "
                        f"collections.defaultdict is accepted: {fix}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise DassError(f"{what} {p} is not valid YAML; {fix}") from None
