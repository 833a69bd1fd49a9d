"""The shape of the code (docs/architecture.md): no import cycles, anywhere, counting imports
inside functions and under TYPE_CHECKING too (a cycle dodged with a late import is still a
cycle: two modules that each need the other); `ruff format` applied; `ruff check` clean,
with its cyclomatic-complexity limit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sizeup"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the sizeup modules it imports (``from pkg import sub`` counts as pkg.sub)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    keep = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(keep + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:
                        graph[name].add(sub)
                    elif base in mods:
                        graph[name].add(base)
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_walker_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_walker_sees_late_and_relative_imports():
    g = import_graph()
    # sizeup.cli imports its command modules; the demo command imports sizeup.demo inside a
    # function: both must be edges, or a cycle through them would go unseen.
    assert "sizeup.cli.train" in g["sizeup.cli"]
    assert "sizeup.demo" in g["sizeup.cli.sweep"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], capture_output=True, text=True, cwd=SRC.parents[1]
    )


def test_code_is_ruff_formatted():
    if _ruff("--version").returncode != 0:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = _ruff("format", "--check", "src", "tests", "benchmarks", "scripts")
    assert r.returncode == 0, "run `ruff format`:\n" + r.stdout + r.stderr


def test_ruff_lints_clean_including_the_complexity_limit():
    if _ruff("--version").returncode != 0:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = _ruff("check", "src", "tests", "benchmarks", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr
