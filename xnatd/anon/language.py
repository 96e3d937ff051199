"""The DicomEdit 6 language as values: the statements and terms a parsed script holds,
and the two errors (a script refused at load, a script that fails on a file).

Plain data: ``script.py`` makes these from text, ``engine.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Union

from xnatd.anon.tagpath import TagPath


class ScriptError(ValueError):
    """A script that does not parse or refers to something that does not exist."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line, self.column = line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


# -- the statements and values the engine walks --------------------------------------
@dataclass(frozen=True)
class Call:
    """A function call, ``name[args]``, with the line it is on."""

    name: str
    args: tuple[Value, ...]
    line: int


@dataclass(frozen=True)
class Variable:
    """A variable's value, by name."""

    name: str


@dataclass(frozen=True)
class ListValue:
    """A list literal, ``[a, b]``; its tag paths stay paths until used as values."""

    items: tuple[Value, ...]


Value = Union[str, int, float, TagPath, Call, Variable, ListValue]  # noqa: UP007


@dataclass(frozen=True)
class Compare:
    """``left = right``, ``!=``, ``~`` (matches a regex) or ``!~``."""

    left: Value
    operator: str
    right: Value


@dataclass(frozen=True)
class Predicate:
    """A call used as a condition (``isPresent[...]``)."""

    call: Call


Condition = Compare | Predicate


@dataclass(frozen=True)
class Assign:
    """``path := value`` (or ``path ?= value``: only if the element is present)."""

    target: TagPath
    value: Value
    only_if_present: bool = False
    line: int = field(default=0, compare=False)  # for messages at load


@dataclass(frozen=True)
class Initialize:
    """``name := value``: a variable's value."""

    name: str
    value: Value


@dataclass(frozen=True)
class Delete:
    """``- path``: delete what the path names."""

    target: TagPath


@dataclass(frozen=True)
class Echo:
    """``echo value``: a value for the log."""

    value: Value | None


@dataclass(frozen=True)
class Conditional:
    """``condition ? then : otherwise``."""

    condition: Condition
    then: Statement
    otherwise: Statement | None


@dataclass(frozen=True)
class IfChain:
    """``if (c) { ... } elseif (c) { ... } else { ... }``."""

    branches: tuple[tuple[Condition, tuple[Statement, ...]], ...]
    otherwise: tuple[Statement, ...] | None


@dataclass(frozen=True)
class Describe:
    """``describe name "label"``: a variable's label for people."""

    name: str
    label: str


@dataclass(frozen=True)
class Export:
    """``export name "path"``: a variable exported to a field of the session."""

    name: str
    path: str


@dataclass(frozen=True)
class RemoveAllPrivate:
    """``removeAllPrivateTags``."""

    pass


@dataclass(frozen=True)
class Version:
    """``version "6.x"``."""

    text: str


Statement = Union[  # noqa: UP007
    Assign,
    Initialize,
    Delete,
    Echo,
    Call,
    Conditional,
    IfChain,
    Describe,
    Export,
    RemoveAllPrivate,
    Version,
]


@dataclass(frozen=True)
class Script:
    """A parsed script: its statements, its version and the functions it calls."""

    statements: tuple[Statement, ...]
    version: str | None
    source: str  # file name or "<text>", for messages
    functions: frozenset[str] = frozenset()  # every function the script calls
    lookup: Mapping[str, str] | None = None  # the table lookup[] reads, when one is given

    def with_lookup(self, table: Mapping[str, str]) -> Script:
        """The same script reading ``lookup[]`` values from ``table``."""
        return replace(self, lookup=table)


class ScriptFailed(Exception):
    """The script could not be applied to this file (the file is not kept as is)."""
