"""List the public classes, functions and methods in ``xnatd/`` that have no docstring.

Public: a module-level class or function whose name does not start with ``_``, and a
method of such a class whose name does not. Dunder methods, ``@overload`` stubs and
property setters and deleters are skipped. A method counts as documented when, in the
method resolution order of some class defined in xnatd, it overrides a method of the
same name that has a docstring (an implementation of a documented abstract method in
``store/index/base.py``, a mixin's included).

Prints ``path:line name`` for each miss and then the total; exit status 1 if any.

Usage: ``python tools/check_docstrings.py [PACKAGE_DIR]`` (default: ``xnatd`` beside
this folder).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ClassKey = tuple[str, str]  # (module, class name)
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class ClassInfo:
    """A module-level class: where it is, its methods and its bases as written."""

    path: Path
    node: ast.ClassDef
    bases: list[ClassKey] = field(default_factory=list)
    methods: dict[str, FunctionNode] = field(default_factory=dict)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's statements, those inside top-level ``if`` and ``try`` blocks included."""
    for statement in body:
        if isinstance(statement, ast.If):
            yield from _top_level(statement.body)
            yield from _top_level(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _top_level(block)
            for handler in statement.handlers:
                yield from _top_level(handler.body)
        else:
            yield statement


def _decorator_names(node: FunctionNode) -> set[str]:
    names: set[str] = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _skipped_method(name: str, node: FunctionNode) -> bool:
    if name.startswith("_"):
        return True  # private, or a dunder
    return bool(_decorator_names(node) & {"overload", "setter", "deleter"})


def _base_name(expression: ast.expr) -> str | None:
    """The name a base class is written with (``Base``, ``mod.Base``, ``Base[T]``)."""
    if isinstance(expression, ast.Subscript):
        expression = expression.value
    if isinstance(expression, ast.Name):
        return expression.id
    if isinstance(expression, ast.Attribute):
        return expression.attr
    return None


def _imports(tree: ast.Module, package: str) -> dict[str, ClassKey]:
    """Names bound by ``from PACKAGE.x import Name [as alias]``: alias -> (module, Name)."""
    bound: dict[str, ClassKey] = {}
    for statement in ast.walk(tree):
        if not isinstance(statement, ast.ImportFrom) or not statement.module:
            continue
        if statement.module == package or statement.module.startswith(package + "."):
            for alias in statement.names:
                bound[alias.asname or alias.name] = (statement.module, alias.name)
    return bound


def _c3(
    key: ClassKey, classes: dict[ClassKey, ClassInfo], seen: frozenset[ClassKey] = frozenset()
) -> list[ClassKey]:
    """The method resolution order of a class, over the classes defined in the package."""
    if key in seen:
        return [key]  # a cycle means a name resolved wrongly: stop here
    bases = [base for base in classes[key].bases if base in classes]
    sequences = [_c3(base, classes, seen | {key}) for base in bases] + [list(bases)]
    order = [key]
    while any(sequences):
        for sequence in sequences:
            if not sequence:
                continue
            head = sequence[0]
            if not any(head in other[1:] for other in sequences):
                break
        else:  # inconsistent: fall back to depth first
            head = next(sequence[0] for sequence in sequences if sequence)
        order.append(head)
        sequences = [[item for item in sequence if item != head] for sequence in sequences]
    return order


def _documented_overrides(classes: dict[ClassKey, ClassInfo]) -> set[tuple[ClassKey, str]]:
    """(class, method) pairs that override a documented method in some class's MRO."""
    covered: set[tuple[ClassKey, str]] = set()
    for key in classes:
        order = _c3(key, classes)
        for position, owner in enumerate(order):
            for name in classes[owner].methods:
                for later in order[position + 1 :]:
                    method = classes[later].methods.get(name)
                    if method is not None and ast.get_docstring(method):
                        covered.add((owner, name))
                        break
    return covered


def find_misses(root: Path) -> list[tuple[Path, int, str]]:
    """Every public class, function and method under root without a docstring, in order."""
    package = root.name
    classes: dict[ClassKey, ClassInfo] = {}
    functions: list[tuple[Path, FunctionNode]] = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = _imports(tree, package)
        local = {node.name for node in _top_level(tree.body) if isinstance(node, ast.ClassDef)}
        for node in _top_level(tree.body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((path, node))
            elif isinstance(node, ast.ClassDef):
                info = ClassInfo(path, node)
                for base in node.bases:
                    name = _base_name(base)
                    if name in local:
                        info.bases.append((module, name))
                    elif name in imported:
                        info.bases.append(imported[name])
                methods = [
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not _skipped_method(item.name, item)
                ]
                for method in methods:
                    info.methods.setdefault(method.name, method)
                classes[(module, node.name)] = info

    covered = _documented_overrides(classes)
    misses: list[tuple[Path, int, str]] = []
    for path, node in functions:
        if node.name.startswith("_") or "overload" in _decorator_names(node):
            continue
        if not ast.get_docstring(node):
            misses.append((path, node.lineno, node.name))
    for key, info in classes.items():
        if info.node.name.startswith("_"):
            continue
        if not ast.get_docstring(info.node):
            misses.append((info.path, info.node.lineno, info.node.name))
        for name, method in info.methods.items():
            if not ast.get_docstring(method) and (key, name) not in covered:
                misses.append((info.path, method.lineno, f"{info.node.name}.{name}"))
    return sorted(misses)


def main(argv: list[str] | None = None) -> int:
    """Print the misses and their total; 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "xnatd"
    parser.add_argument("package", nargs="?", type=Path, default=default)
    root = parser.parse_args(argv).package.resolve()
    base = root.parent
    misses = find_misses(root)
    for path, line, name in misses:
        print(f"{path.relative_to(base)}:{line} {name}")
    print(f"{len(misses)} without a docstring")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
