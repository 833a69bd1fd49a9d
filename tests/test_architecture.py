"""The shape of the code (docs/architecture.md): no import cycles, anywhere, counting imports
inside functions and under TYPE_CHECKING too (a cycle dodged with a late import is still a
cycle: two modules that each need the other); none between packages either, and every import
goes down the documented layers; an import inside a function only where the architecture says
why (the command line's and torch-free readers' start-up); `ruff format` applied; `ruff check`
clean, with its cyclomatic-complexity limit."""

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


# The layers of docs/architecture.md ("Layering"), bottom first: a package may import its own
# layer and those below it, never one above.
LAYERS = [
    {"choices", "errors", "wrapping", "figures", "progress"},
    {"registry", "schedules"},
    {"config"},
    {"flops", "data"},
    {"models"},
    {"optim"},
    {"parametrization"},
    {"train"},
    {"diagnostics"},
    {"sweep"},
    {"laws"},
    {"plan"},
    {"report"},
    # critbatch: the critical-batch study (reads demo's study GPT); loop: `demo --axis plan`
    {"demo", "critbatch", "loop"},
    {"cli", "__main__"},
]
# The top-level package (sizeup/__init__.py: its parametrize) sits above parametrization and
# below the demo and the command line, which print its version.
LAYERS.insert(7, {"sizeup"})
# torchtitan integration (issue 25): sizeup inside other trainers, above the planner (the
# command line's `plan --emit` imports it when asked)
LAYERS.insert(LAYERS.index({"plan"}) + 1, {"integrations"})

# Imports of sizeup modules inside functions, outside sizeup.cli (whose commands import their
# stage when run, so `sizeup --help` and a mistyped flag answer without importing torch): each
# keeps torch (or scipy) out of a module that torch-free code imports.
LATE_IMPORTS = {
    # `import sizeup` stays torch-free; sizeup.parametrize imports the package on first call
    ("sizeup", "sizeup.parametrization"),
    # the planner's records declare the command line's options; the presets import the fits
    # (torch's L-BFGS), needed only once a plan runs
    ("sizeup.plan.records", "sizeup.laws.presets"),
    ("sizeup.plan.stages", "sizeup.laws.presets"),
    # a study's driver and executors run any runner (sizeup.sweep.testing's is torch-free);
    # sizeup.train is imported by the default runner and by logging, when used
    ("sizeup.sweep.driver", "sizeup.train.loggers"),
    ("sizeup.sweep.executors", "sizeup.train"),
    ("sizeup.sweep.executors", "sizeup.train.loggers"),
    # stacked trials (issue 24): the default stack runner and the stack size from memory
    ("sizeup.sweep.executors", "sizeup.train.stacked"),
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph() -> dict[str, set[str]]:
    """Package (sizeup.X) -> the packages its modules import."""
    out: dict[str, set[str]] = {}
    for a, targets in import_graph().items():
        out.setdefault(_package(a), set())
        for b in targets:
            if _package(b) != _package(a):
                out[_package(a)].add(_package(b))
                out.setdefault(_package(b), set())
    return out


def test_no_cycles_between_packages():
    cycle = find_cycle(package_graph())
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_documented_layers():
    level = {p: i for i, layer in enumerate(LAYERS) for p in layer}
    graph = package_graph()
    unknown = sorted(set(graph) - set(level))
    assert not unknown, f"packages missing from LAYERS (and docs/architecture.md): {unknown}"
    upward = [(a, b) for a in graph for b in graph[a] if level[b] > level[a]]
    assert not upward, f"imports against the layers (docs/architecture.md): {sorted(upward)}"


def late_imports() -> set[tuple[str, str]]:
    """(module, sizeup module) for every import of sizeup inside a function, outside the CLI."""
    out = set()
    for name, path in _modules().items():
        if name.startswith("sizeup.cli"):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sizeup"):
                    out.add((name, node.module))
                elif isinstance(node, ast.Import):
                    out |= {(name, a.name) for a in node.names if a.name.startswith("sizeup")}
    return out


def test_imports_inside_functions_only_where_the_architecture_says_why():
    unexplained = sorted(late_imports() - LATE_IMPORTS)
    assert not unexplained, (
        "import at module level (a cycle it would make is a layering bug to fix, not to hide); "
        f"or add the reason to LATE_IMPORTS and docs/architecture.md: {unexplained}"
    )
    stale = sorted(LATE_IMPORTS - late_imports())
    assert not stale, f"LATE_IMPORTS lists imports that are gone: {stale}"


def test_the_layer_check_fails_on_an_upward_import():
    level = {p: i for i, layer in enumerate(LAYERS) for p in layer}
    assert level["train"] > level["optim"] and level["cli"] > level["plan"]
    assert find_cycle({"train": {"diagnostics"}, "diagnostics": {"train"}}) is not None


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
