"""DicomEdit 6 scripts: parsed by the grammar in ``de6.lark`` into plain statements.

The grammar file and Lark (LALR) do the parsing; this module only turns the tree
into values the engine walks, and a parse failure into a ``ScriptError`` naming the
line, the column and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from lark import (
    Lark,
    Token,
    Transformer,
    Tree,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    v_args,
)
from lark.exceptions import VisitError

from xnatd.anon.functions import check_call
from xnatd.anon.language import (
    Assign,
    Call,
    Compare,
    Conditional,
    Delete,
    Describe,
    Echo,
    Export,
    IfChain,
    Initialize,
    ListValue,
    Predicate,
    RemoveAllPrivate,
    Script,
    ScriptError,
    Variable,
    Version,
)
from xnatd.anon.tagpath import TagPath

GRAMMAR = Path(__file__).with_name("de6.lark")


# -- strings ------------------------------------------------------------------------------
_ESCAPE = re.compile(r"\\([0-7]{3}|.)")
_CONTINUATION = re.compile(r"\\\r?\n")  # backslash, line break: the line goes on
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def unquote(token: str) -> str:
    """A DicomEdit string literal's value: ``\\n \\t \\\\ \\( \\)`` and octal escapes."""

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 3:
            return chr(int(code, 8))
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(replace, _CONTINUATION.sub("", token[1:-1]))


class _ToStatements(Transformer):
    def __init__(self, *, strict: bool = True) -> None:
        super().__init__()
        # A script's own tag paths follow DicomEdit's grammar; a path given as a string
        # argument may also name a private element by number, delete["(0009,1010)"].
        self.strict = strict

    def start(self, items: Sequence[Any]) -> tuple:
        return tuple(items)

    def string(self, items: Sequence[Token]) -> str:
        return unquote(items[0])

    def number(self, items: Sequence[Token]) -> int | float:
        text = str(items[0])
        return float(text) if "." in text else int(text)

    def variable(self, items: Sequence[Token]) -> Variable:
        return Variable(str(items[0]))

    def list(self, items: Sequence[Any]) -> ListValue:
        return ListValue(tuple(item for item in items if item is not None))

    @v_args(meta=True)
    def tagpath(self, meta: object, items: Sequence[Any]) -> TagPath:
        line = getattr(meta, "line", None)
        try:
            path = TagPath.from_parts(items)
        except ValueError as exc:
            raise ScriptError(str(exc), line, getattr(meta, "column", None)) from None
        if self.strict and (bad := path.direct_private()) is not None:
            raise ScriptError(
                f"{bad.text} is not a tag DicomEdit accepts: a private element is named "
                "through its creator, (gggg,{Creator}ee), in an odd group; a public one "
                "in an even group",
                line,
                getattr(meta, "column", None),
            )
        return path

    def step(self, items: Sequence[Any]) -> tuple[str, str | None]:
        return (str(items[0]), items[1])

    def item(self, items: Sequence[Token]) -> str:
        return str(items[0])

    def call(self, items: Sequence[Any]) -> Call:
        name: Token = items[0]
        args = tuple(item for item in items[1:] if item is not None)
        return Call(str(name), args, name.line or 0)

    def compare(self, items: Sequence[Any]) -> Compare:
        return Compare(items[0], str(items[1]), items[2])

    def predicate(self, items: Sequence[Any]) -> Predicate:
        return Predicate(items[0])

    @v_args(meta=True)
    def assign(self, meta: object, items: Sequence[Any]) -> Assign:
        return Assign(items[0], items[1], line=getattr(meta, "line", 0))

    @v_args(meta=True)
    def assign_if_exists(self, meta: object, items: Sequence[Any]) -> Assign:
        return Assign(items[0], items[1], only_if_present=True, line=getattr(meta, "line", 0))

    def initialize(self, items: Sequence[Any]) -> Initialize:
        return Initialize(str(items[0]), items[1])

    def delete(self, items: Sequence[Any]) -> Delete:
        return Delete(items[0])

    def echo(self, items: Sequence[Any]) -> Echo:
        return Echo(items[0] if items else None)

    def conditional(self, items: Sequence[Any]) -> Conditional:
        return Conditional(items[0], items[1], items[2] if len(items) > 2 else None)

    def block(self, items: Sequence[Any]) -> tuple:
        return tuple(items)

    def if_chain(self, items: Sequence[Any]) -> IfChain:
        # condition, block, [condition, block]..., else-block (None when absent)
        *pairs, otherwise = items
        branches = tuple((pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2))
        return IfChain(branches, otherwise)

    def describe(self, items: Sequence[Token]) -> Describe:
        label = str(items[1])
        return Describe(str(items[0]), unquote(label) if label.startswith('"') else label)

    def export(self, items: Sequence[Token]) -> Export:
        return Export(str(items[0]), unquote(items[1]))

    def remove_all_private(self, items: Sequence[Any]) -> RemoveAllPrivate:
        return RemoveAllPrivate()

    def version(self, items: Sequence[Token]) -> Version:
        return Version(unquote(items[0]))


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True)


_DESCRIBED = {
    "_NL": "end of line",
    "_COMMA": ",",
    "_LBRACE": "{",
    "_RBRACE": "}",
    "_ELSEIF": "elseif",
    "_ELSE": "else",
    "NAME": "a variable or function",
    "SIGNED_INT": "a number",
    "SIGNED_FLOAT": "a number",
    "STRING": "a string",
    "TAG": "a tag (gggg,eeee)",
    "STEP_WILDCARD": "*/ +/ ./",
    "OPERATOR": "= != ~ !~",
    "DESCRIBE_FLAG": "hidden const immutable",
    "INT": "a number",
    "ITEM_WILDCARD": "%",
}


def _expected(error: UnexpectedInput) -> str:
    """What the grammar would have accepted, in the script's own words."""
    names = getattr(error, "expected", None) or getattr(error, "allowed", None) or []
    terminals = {terminal.name: terminal for terminal in _parser().terminals}
    described = set()
    for name in names:
        terminal = terminals.get(name)
        if name in _DESCRIBED:
            described.add(_DESCRIBED[name])
        elif terminal is not None and terminal.pattern.type == "str":
            described.add(terminal.pattern.value)
        else:
            described.add(name)
    return ", ".join(sorted(described))


_JOIN_LINES = re.compile(r"\\\r?\n")


def _tree(text: str) -> Tree:
    """The parse tree of a script, or of one tag path given as text.

    Raises:
        ScriptError: with line, column and what was expected there.
    """
    # A backslash ending a line joins it to the next wherever it stands (in a tag, a
    # string, a comment), as DicomEdit's line joiner does before its parser runs.
    text = _JOIN_LINES.sub("", text)
    try:
        return _parser().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedCharacters as error:
        raise ScriptError(
            f"unexpected character {error.char!r}; expected {_expected(error)}",
            error.line,
            error.column,
        ) from None
    except UnexpectedToken as error:
        token = str(error.token)
        found = (
            "end of input"
            if error.token.type == "$END"
            else "end of line"
            if not token.strip()
            else repr(token)
        )
        raise ScriptError(
            f"unexpected {found}; expected {_expected(error)}", error.line, error.column
        ) from None
    except UnexpectedInput as error:
        raise ScriptError(str(error).splitlines()[0], error.line, error.column) from None


def _transform(tree: Tree, *, strict: bool = True) -> tuple:
    try:
        return _ToStatements(strict=strict).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, ScriptError):
            raise error.orig_exc from None
        raise


def parse_tagpath(text: str) -> TagPath:
    """One tag path written as text, as string arguments give them (``"(0010,0010)"``).

    Raises:
        ScriptError: not a tag path.
    """
    statements = _transform(_tree(f"-{text}\n"), strict=False)
    if len(statements) != 1 or not isinstance(statements[0], Delete):
        raise ScriptError(f"{text!r} is not a tag path")
    return statements[0].target


def parse_path_argument(text: str) -> TagPath:
    """A tag path given as a string argument (``delete["(0010,0010)"]``); a private
    element may be named by its number here, as DicomEdit's string paths allow.

    Raises:
        ValueError: not a tag path.
    """
    try:
        return parse_tagpath(text.strip())
    except ScriptError as error:
        raise ValueError(f"{text!r} is not a tag path") from error


def parse(text: str, source: str = "<text>") -> Script:
    """Parse a script, refusing what DicomEdit refuses when it loads one.

    Raises:
        ScriptError: with line, column and what was expected there.
    """
    statements = _transform(_tree(text))
    version = next((s.text for s in statements if isinstance(s, Version)), None)
    if version is not None and not _SUPPORTED_VERSION.fullmatch(version):
        raise ScriptError(f'version "{version}" is not DicomEdit 6 (write version "6.x")', 1, 1)
    for statement in _flatten(statements):
        _check_terms(statement)
    calls = _calls(statements)
    for call in calls:
        check_call(call)
    return Script(statements, version, source, frozenset(call.name for call in calls))


_SUPPORTED_VERSION = re.compile(r"6(\.\d+)*")


def _flatten(statements: tuple) -> list:
    """Every statement, those inside conditionals and blocks too."""
    found: list = []
    for statement in statements:
        found.append(statement)
        if isinstance(statement, Conditional):
            found.extend(_flatten(tuple(s for s in (statement.then, statement.otherwise) if s)))
        elif isinstance(statement, IfChain):
            for _, block in statement.branches:
                found.extend(_flatten(block))
            if statement.otherwise is not None:
                found.extend(_flatten(statement.otherwise))
    return found


def _check_terms(statement: object) -> None:
    """DicomEdit's rules for tag paths as terms: ``:=`` writes one element, and a value
    read from a tag path comes from one element ("Path matching multiple tags not
    allowed as term")."""
    if isinstance(statement, Assign):
        if not statement.only_if_present and statement.target.plural:
            raise ScriptError(
                f"{statement.target} may name several elements; := needs one "
                "(use ?= to change every one that exists)",
                statement.line,
                1,
            )
        if isinstance(statement.value, TagPath) and statement.value.plural:
            raise ScriptError(
                f"{statement.value} may name several elements; a value comes from one",
                statement.line,
                1,
            )


def _calls(node: object) -> list[Call]:
    """Every function call in the script, nested ones included (checked at load)."""
    found: list[Call] = []
    if isinstance(node, Call):
        found.append(node)
        for arg in node.args:
            found.extend(_calls(arg))
    elif isinstance(node, tuple):
        for item in node:
            found.extend(_calls(item))
    elif hasattr(node, "__dataclass_fields__"):
        for name in node.__dataclass_fields__:
            found.extend(_calls(getattr(node, name)))
    return found


_CACHE: dict[Path, tuple[float, Script]] = {}


def load(path: Path) -> Script:
    """Parse a script file, cached by path and modification time.

    Raises:
        ScriptError: it does not parse (the message names the file).
        OSError: it cannot be read.
    """
    stamp = path.stat().st_mtime
    cached = _CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        script = parse(path.read_text(encoding="utf-8"), str(path))
    except ScriptError as error:
        raise ScriptError(f"{path}: {error}") from None
    _CACHE[path] = (stamp, script)
    return script
