"""tools/check_docstrings.py: which public names it reports as undocumented."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_docstrings.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_docstrings", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "index").mkdir(parents=True)
    files = {
        "__init__.py": '"""Package."""\n',
        "index/base.py": '''
            """Base."""
            import abc


            class Index(abc.ABC):
                """The calls."""

                @abc.abstractmethod
                def documented(self) -> int:
                    """Documented once, here."""

                @abc.abstractmethod
                def bare(self) -> int: ...
            ''',
        "index/tables.py": '''
            """A mixin implementing the calls, without Index among its bases."""


            class Tables:
                """Rows."""

                def documented(self) -> int:
                    return 1

                def bare(self) -> int:
                    return 2

                def extra(self) -> int:
                    return 3
            ''',
        "index/sql.py": '''
            """Puts them together."""
            from pkg.index.base import Index
            from pkg.index.tables import Tables


            class SqlIndex(Tables, Index):
                """Both."""
            ''',
        "things.py": '''
            """Things."""
            from typing import overload


            def public(): pass


            def _private(): pass


            @overload
            def twice(x: int) -> int: ...
            def twice(x):
                """Twice."""
                return 2 * x


            class Thing:
                def __init__(self): pass

                def method(self): pass

                @property
                def value(self):
                    """The value."""
                    return 1

                @value.setter
                def value(self, new): pass


            class _Hidden:
                def method(self): pass
            ''',
    }
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_reports_undocumented_public_names_only(package: Path) -> None:
    """Private names, dunders, overloads, setters and documented overrides are not misses."""
    misses = {(path.name, name) for path, _, name in _checker().find_misses(package)}
    assert misses == {
        ("base.py", "Index.bare"),
        ("tables.py", "Tables.bare"),
        ("tables.py", "Tables.extra"),
        ("things.py", "public"),
        ("things.py", "Thing"),
        ("things.py", "Thing.method"),
    }


def test_exit_status_and_total(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One line per miss, then the total; exit status 1 while any is left."""
    assert _checker().main([str(package)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "6 without a docstring"
    assert "pkg/things.py:6 public" in lines


def test_clean_package_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A package with every public name documented passes."""
    root = tmp_path / "clean"
    root.mkdir()
    (root / "__init__.py").write_text('"""Clean."""\n\n\ndef f():\n    """F."""\n')
    assert _checker().main([str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 without a docstring"]
