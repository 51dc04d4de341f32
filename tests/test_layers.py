"""The package's layers (README, "Architecture"): every import of a fume module, at module level or
inside a function, goes to the same or a lower layer, and neither modules nor packages form a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower numbers sit lower; a module may import its own layer or below.
LAYERS = {
    "fume": 0, "fume.errors": 0, "fume.contract": 0, "fume.config": 0, "fume.io": 0, "fume.machine": 0, "fume.logs": 0, "fume.locks": 0,
    "fume.data": 1, "fume.models": 1,
    "fume.training": 2, "fume.evaluation": 2, "fume.inference": 2, "fume.reporting": 2,
    "fume.workflows": 3, "fume.serve": 3,
    "fume.cli": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: a core module itself, or its sub-package."""
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name
    raise AssertionError(f"module {module} belongs to no layer; add its package to LAYERS and the README's architecture map")


def fume_imports(path: Path, module: str) -> set[str]:
    """Every fume module `path` imports, anywhere in the file (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fume")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "fume":
                continue
            for alias in node.names:  # `from fume.models import baselines` imports a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m != module}


MODULES = {module_name(p): p for p in sorted((SRC / "fume").rglob("*.py"))}
GRAPH = {m: fume_imports(p, m) for m, p in MODULES.items()}


def test_every_import_stays_in_its_layer_or_goes_down() -> None:
    upward = [
        f"{m} (layer {LAYERS[unit_of(m)]}) imports {t} (layer {LAYERS[unit_of(t)]})"
        for m, targets in GRAPH.items() for t in sorted(targets)
        if t in MODULES and LAYERS[unit_of(t)] > LAYERS[unit_of(m)]
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_every_imported_fume_module_exists() -> None:
    missing = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in sorted(targets) if t not in MODULES]
    assert not missing, "\n".join(missing)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_form_a_cycle() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    graph = {m: {t for t in targets if not (m == unit_of(t) and MODULES[m].name == "__init__.py")} for m, targets in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_package_imports_form_a_cycle() -> None:
    packages: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        packages.setdefault(unit_of(m), set()).update(unit_of(t) for t in targets if t in MODULES and unit_of(t) != unit_of(m))
    cycle = find_cycle(packages)
    assert cycle is None, "packages import each other: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from fume.models import registry\n", {"fume.models.registry"}),
        ("def f():\n    from fume.workflows.train import train\n", {"fume.workflows.train"}),
        ("from . import contract\n", {"fume.contract"}),
    ],
)
def test_the_import_reader_sees_function_level_and_relative_imports(tmp_path: Path, source: str, expected: set[str]) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert fume_imports(probe, "fume.probe") == expected


def test_a_cycle_is_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
