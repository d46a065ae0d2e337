"""docs/method.md is the one reference the code cites: its sections exist and every citation resolves."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ("space", "remap", "embedding", "teachers", "kd", "database", "predictor", "meta-learning", "search",
           "evaluation", "benchmark", "file-formats", "authors-compat")
CITING = ("dass", "tests", "bench", "script", "configs", "download", "main.py", "README.md")
SUFFIXES = {".py", ".sh", ".yaml", ".md"}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def doc_anchors() -> set[str]:
    text = (ROOT / "docs" / "method.md").read_text()
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def citing_files():
    for name in CITING:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        yield from (f for f in files if f != Path(__file__).resolve())


def cited_anchors(text: str) -> list[str]:
    """``docs/method.md#a, #b`` cites a and b."""
    out = []
    for m in re.finditer(r"docs/method\.md((?:#[\w-]+(?:, )?)+)", text):
        out += re.findall(r"#([\w-]+)", m.group(1))
    return out


def test_github_anchor_rules():
    assert github_anchor("Authors' compat") == "authors-compat"
    assert github_anchor("Meta-learning") == "meta-learning"
    assert cited_anchors("see docs/method.md#kd, #teachers: x #y") == ["kd", "teachers"]


def test_every_section_exists():
    assert set(ANCHORS) <= doc_anchors()


def test_every_citation_resolves_and_none_cites_elsewhere():
    anchors = doc_anchors()
    bad, stale = [], []
    for path in citing_files():
        text = path.read_text(errors="replace")
        rel = path.relative_to(ROOT)
        bad += [f"{rel}: #{a}" for a in cited_anchors(text) if a not in anchors]
        stale += [f"{rel}: {m}" for m in re.findall(r"SPEC ?§?\d+|\bissue \d+", text)]
    assert not bad, f"citations of missing sections: {bad}"
    assert not stale, f"cite docs/method.md instead: {stale}"
