"""The package's layers only point down, and no two modules import each other (not even inside a function).

Layers, lowest first (README, "The package, by layer"): a module may import its own layer and the ones
below it. Every ``import`` in ``dass/`` is read from the source (top-level and function-local alike).
"""
from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dass"

LAYERS = [
    ("base", ["dass", "dass.errors", "dass.io", "dass.seeds", "dass.parallel", "dass.config", "dass.space",
              "dass.layout", "dass.metrics", "dass.stats", "dass.archives", "dass.debpkg", "dass.download"]),
    ("data", ["dass.data", "dass.data.*"]),
    ("models", ["dass.nets", "dass.remap", "dass.embed", "dass.fastembed", "dass.students"]),
    ("training", ["dass.train", "dass.train.*"]),
    ("database", ["dass.db", "dass.db.*"]),
    ("predictor", ["dass.predictor", "dass.predictor.*"]),
    ("search", ["dass.search"]),
    ("evaluation", ["dass.evaluate", "dass.plots", "dass.spearman_csv"]),
    ("application", ["dass.manifest", "dass.demo", "dass.testing", "dass.cli", "dass.__main__", "dass.commands",
                     "dass.commands.*"]),
]


def module_name(path: Path, root: Path = PKG.parent) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PKG.parent) -> set[str]:
    """The dass modules ``path`` imports (``from .x import y`` counts y when y is a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in modules and m != name}


def layer_of(module: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, p) for p in patterns):
            return i
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS in tests/test_layers.py")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def test_every_import_points_down_or_sideways(graph):
    up = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
          for m, deps in graph.items() for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert not up, "imports that point up a layer:\n" + "\n".join(up)


def test_no_import_cycle(graph):
    # depth-first search for a back edge; report the cycle
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_function_local_imports(tmp_path):
    """A test that cannot fail is a defect: the checker must catch an upward import hidden in a function."""
    p = PKG / "data" / "tasks.py"
    src = p.read_text() + "\n\ndef _probe():\n    from ..train.engine import train_teacher\n"
    fake = tmp_path / "dass" / "data"
    fake.mkdir(parents=True)
    (fake / "tasks.py").write_text(src)
    modules = {"dass.data.tasks", "dass.train.engine", "dass.errors", "dass.io", "dass.data.loader"}
    found = imports_of(fake / "tasks.py", modules, root=tmp_path)
    assert "dass.train.engine" in found and layer_of("dass.train.engine") > layer_of("dass.data.tasks")
