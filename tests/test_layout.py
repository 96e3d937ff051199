"""The package's shape (issue 18): imports point one way and a name finds one file.

Read from the source with ``ast`` (every import, lazy and type-only ones included), so
a change that bends the layout fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xnatd"

# Stages above the store, and the places that wire them: the store imports none.
ABOVE_STORE = (
    "xnatd.api",
    "xnatd.archive",
    "xnatd.assembler",
    "xnatd.anon",
    "xnatd.cli",
    "xnatd.config",
    "xnatd.daemon",
    "xnatd.intake",
    "xnatd.operations",
    "xnatd.phi",
    "xnatd.pipeline",
    "xnatd.routing",
    "xnatd.rows",
    "xnatd.scp",
)
# Storage Commitment answers from the store's record of what it holds; that one service
# reads the store directly (it writes nothing there but its own pending reports).
SCP_MAY_READ = ("xnatd.store.commitments", "xnatd.store.index.records")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The xnatd modules a file imports (``from pkg import module`` counts the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("xnatd")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xnatd"):
            assert node.module is not None
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
            names |= subs if len(subs) == len(node.names) else subs | {node.module}
    return {name for name in names if name in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_others(graph) -> None:
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_store_imports_no_stage_above_it(graph) -> None:
    upward = {
        module: sorted(t for t in targets if within(t, ABOVE_STORE))
        for module, targets in graph.items()
        if within(module, ("xnatd.store",))
    }
    assert {m: t for m, t in upward.items() if t} == {}


def test_the_receivers_reach_the_store_only_through_intake(graph) -> None:
    direct = {
        module: sorted(
            t for t in targets if within(t, ("xnatd.store",)) and not within(t, SCP_MAY_READ)
        )
        for module, targets in graph.items()
        if within(module, ("xnatd.scp",))
    }
    assert {m: t for m, t in direct.items() if t} == {}


def test_a_module_name_finds_one_file() -> None:
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert sorted(name for name, count in names.items() if count > 1) == []


def test_only_the_hooks_module_touches_pynetdicom_internals() -> None:
    """Replacing pynetdicom's private methods or module globals happens in one place."""
    touching = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if any(
            marker in text
            for marker in (
                "DULServiceProvider.",
                "Association.__init__ =",
                "acse_module.",
                "association_module.time",
                "dul_module.time",
            )
        ):
            touching.append(path.relative_to(PACKAGE).as_posix())
    assert touching == ["scp/hooks.py"]
