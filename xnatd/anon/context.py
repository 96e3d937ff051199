"""One run of a DicomEdit 6 script over one dataset: reading, writing, finding and
deleting elements by tag path, evaluating values and conditions, and executing the
statements. Knows nothing of the function table or the grammar: the engine gives both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

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
    ScriptFailed,
    Statement,
    Variable,
    Version,
)
from xnatd.anon.tagpath import Step, TagPath

log = structlog.get_logger(__name__)


FunctionEntry = tuple[Callable[..., Any], int, int | None]
"""A function of the language: what it does, and its least and most arguments."""


_NUMERIC_VRS = {
    "US": int,
    "SS": int,
    "UL": int,
    "SL": int,
    "UV": int,
    "SV": int,
    "FL": float,
    "FD": float,
}
_TEXT_VRS = {
    "AE",
    "AS",
    "CS",
    "DA",
    "DS",
    "DT",
    "IS",
    "LO",
    "LT",
    "PN",
    "SH",
    "ST",
    "TM",
    "UC",
    "UI",
    "UR",
    "UT",
}


class Rejected(Exception):
    """``reject[]`` ran: the file must not be kept."""


@dataclass
class Result:
    """What a run of a script did to its file: rejected, and the values it echoed."""

    rejected: bool = False
    echoes: list[str] = field(default_factory=list)


def _as_text(value: Any) -> str | None:
    """A value as DicomEdit sees it (dcm4che's strings): multiple values joined by
    ``\\``, a whole float without ``.0``, an AT value as eight hex digits."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | MultiValue | tuple):
        return "\\".join(_as_text(v) or "" for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\x00 ")
    if isinstance(value, BaseTag):
        return f"{int(value):08X}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Context:
    """One run of a script over one dataset."""

    def __init__(
        self,
        dataset: Dataset,
        variables: Mapping[str, Any],
        lookup: Mapping[str, str] | None = None,
        *,
        functions: Mapping[str, FunctionEntry],
        parse_path: Callable[[str], TagPath],
    ) -> None:
        """``functions`` and ``parse_path`` come from the engine (the function table, and
        the grammar for tag paths given as strings), so this module needs neither."""
        self.dataset = dataset
        self.functions = functions
        self.parse_path = parse_path
        self.variables: dict[str, Any] = dict(variables)
        self.lookup = lookup
        self.uid_map: dict[str, str] = {}
        self.result = Result()

    # -- values ------------------------------------------------------------------------
    def value(self, node: Any) -> Any:
        """A term's value: text, a number, an element's value, a variable's or a call's."""
        if isinstance(node, str | int | float):
            return node
        if isinstance(node, TagPath):
            return self.get(node)
        if isinstance(node, Variable):
            if node.name not in self.variables:
                raise ScriptFailed(f"variable {node.name} is not set")
            held = self.variables[node.name]
            # A list literal is kept as written, so its tag paths stay paths for
            # removeTags[var] and the like; used as a value it is evaluated here.
            return self.value(held) if isinstance(held, ListValue) else held
        if isinstance(node, ListValue):
            return [self.value(item) for item in node.items]
        if isinstance(node, Call):
            return self.call(node)
        raise ScriptFailed(f"cannot evaluate {node!r}")

    def text(self, node: Any) -> str | None:
        """A term's value as text (None for a missing element)."""
        return _as_text(self.value(node))

    def paths(self, node: Any) -> list[TagPath]:
        """Every tag path an argument names: a path, a path string, a list (nested lists
        too) or a variable holding one (``to_remove := {(0008,0022), (0008,1140)}``)."""
        if isinstance(node, TagPath):
            return [node]
        if isinstance(node, ListValue):
            return [path for item in node.items for path in self.paths(item)]
        if isinstance(node, Variable) and isinstance(self.variables.get(node.name), ListValue):
            return self.paths(self.variables[node.name])
        value = self.value(node)
        if isinstance(value, list):
            return [path for item in value for path in self.paths(item)]
        return [self.path(value if isinstance(value, TagPath) else node)]

    def path(self, node: Any) -> TagPath:
        """A tag path given as a path or as a string (``delete["(0010,0010)"]``)."""
        if isinstance(node, TagPath):
            return node
        text = self.text(node) or ""
        try:
            return self.parse_path(text)
        except ValueError as exc:
            raise ScriptFailed(str(exc)) from None

    def root(self, path: TagPath) -> Dataset:
        """The data set a path starts in: the file meta header for group 0002."""
        first = path.parts[0]
        meta = getattr(self.dataset, "file_meta", None)
        if isinstance(first, Step) and first.group == "0002" and meta is not None:
            return meta
        return self.dataset

    def find(self, path: TagPath) -> list[tuple[Dataset, int]]:
        """Every (dataset, tag) the path names that exists, nested items included."""
        return path.find(self.root(path))

    def get(self, path: TagPath) -> str | None:
        """The value of the first element the path names, as text; None if none."""
        found = self.find(path)
        if not found:
            return None
        dataset, tag = found[0]
        element = dataset[tag]
        return "" if element.VR == "SQ" else _as_text(element.value)

    def read(self, dataset: Dataset, tag: int) -> str:
        """An element's value as DicomEdit text ("" for sequences and empty values)."""
        element = dataset[tag]
        return "" if element.VR == "SQ" else _as_text(element.value) or ""

    def get_tag(self, tag: int) -> str | None:
        """The value of a top-level element, as text; None if absent."""
        element = self.dataset.get(tag)
        return None if element is None else _as_text(element.value)

    def everywhere(self, tag: int) -> Iterator[tuple[Dataset, int]]:
        """Every occurrence of a tag, at any depth."""
        yield from TagPath.from_parts(["*", (f"({tag >> 16:04X},{tag & 0xFFFF:04X})", None)]).find(
            self.dataset
        )

    # -- changes ----------------------------------------------------------------------
    def write(self, dataset: Dataset, tag: int, value: Any) -> None:
        """Set one element's value, converted to its VR (created if absent)."""
        element = dataset.get(tag)
        vr = element.VR if element is not None else _vr_for(tag)
        converted = _convert(value, vr, tag)
        if element is None:
            dataset.add_new(tag, vr, converted)
        else:
            element.value = converted

    def assign(self, path: TagPath, value: Any, *, only_if_present: bool = False) -> None:
        """Write a value where the path names elements; a missing element is created
        (with the sequences, items and private creators it needs) unless ``?=`` or the
        path is plural. A value that does not exist (a match that failed, a key not in
        the lookup table) writes an empty value: never leaves the old one."""
        found = self.find(path)
        for dataset, tag in found:
            self.write(dataset, tag, value)
        if found or only_if_present or path.plural:
            return
        last = path.parts[-1]
        assert isinstance(last, Step)
        parents = path.parents(self.root(path)) or [self._make_parents(path)]
        for parent in parents:
            self.write(parent, self._new_tag(parent, last), value)

    def _make_parents(self, path: TagPath) -> Dataset:
        """The item the last element of a singular path goes in, creating the sequences
        and items on the way (item n of a sequence with fewer gets empty items before it)."""
        dataset = self.root(path)
        for step in path.parts[:-1]:
            assert isinstance(step, Step)
            tags = step.tags_in(dataset)
            if tags:
                element = dataset[tags[0]]
            else:
                tag = self._new_tag(dataset, step)
                dataset.add_new(tag, "SQ", Sequence())
                element = dataset[tag]
            if element.VR != "SQ":
                raise ScriptFailed(f"{path}: {step.text} is not a sequence")
            items = element.value
            if items is None or isinstance(items, bytes | str):
                element.value = items = Sequence()
            index = int(step.item) if step.item not in (None, "%") else 0
            while len(items) <= index:
                items.append(Dataset())
            dataset = items[index]
        return dataset

    def _new_tag(self, dataset: Dataset, step: Step) -> int:
        group = int(step.group, 16)
        if step.creator is None:
            return int(step.group + step.element, 16)
        blocks = [block for block, g in step.creator_blocks(dataset) if g == group]
        if blocks:
            block = blocks[0]
        else:  # reserve the first free block for this creator
            used = {element.tag.element for element in dataset.group_dataset(group)}
            block = next(b for b in range(0x10, 0x100) if b not in used)
            dataset.add_new((group << 16) | block, "LO", step.creator)
        return (group << 16) | (block << 8) | int(step.element, 16)

    def delete(self, path: TagPath) -> None:
        """Delete what the path names. A path ending in an item, ``(0010,1002)[0]``,
        empties that item and leaves it in its sequence, as DicomEdit does (DE-91)."""
        last = path.parts[-1]
        for dataset, tag in self.find(path):
            if tag not in dataset:
                continue
            if isinstance(last, Step) and last.item not in (None, "%"):
                for item in last.items_of(dataset, tag):
                    for inner in list(item.keys()):
                        del item[inner]
            else:
                del dataset[tag]

    def remove_private(
        self,
        keep: Callable[[Dataset, int], bool] = lambda d, t: False,
        whole: Callable[[Dataset, int], bool] = lambda d, t: False,
    ) -> None:
        """Delete private elements at every depth but those ``keep`` names; inside a
        kept sequence private elements go too, unless ``whole`` says it is kept whole."""

        def walk(dataset: Dataset) -> None:
            # Tags and raw VRs only: converting every element's value would cost more
            # than the deletion itself.
            for tag in list(dataset.keys()):
                if tag.group % 2 == 1 and not keep(dataset, int(tag)):
                    del dataset[tag]
                elif whole(dataset, int(tag)):
                    continue
                elif dataset.get_item(tag).VR == "SQ":
                    for item in dataset[tag].value or ():
                        walk(item)

        walk(self.dataset)

    def blank_known_values(self, known: set[str]) -> None:
        """Empty every element, the file meta header's and nested ones too, whose value is
        one of ``known``. Text is compared without leading and trailing spaces (PS3.5
        6.2) but with its case; numbers by their text; an element keeps its VR."""
        wanted = {value.strip() for value in known} - {""}

        def walk(dataset: Dataset) -> None:
            for element in dataset:
                if element.VR == "SQ":
                    for item in element.value or ():
                        walk(item)
                elif element.VR in _TEXT_VRS or element.VR in _NUMERIC_VRS:
                    text = _as_text(element.value)
                    if text is not None and text.strip() in wanted:
                        element.value = "" if element.VR in _TEXT_VRS else None

        meta = getattr(self.dataset, "file_meta", None)
        if meta is not None:
            walk(meta)
        walk(self.dataset)

    def reject(self) -> None:
        """The script rejects the file: it is not kept (``reject[]``)."""
        self.result.rejected = True
        raise Rejected

    # -- statements --------------------------------------------------------------------
    def call(self, call: Call) -> Any:
        """Run a function of the language; its failures name the line."""
        function, _, _ = self.functions[call.name]
        try:
            return function(self, call.args)
        except (Rejected, ScriptFailed):
            raise
        except (ValueError, re.error, OSError, IndexError, KeyError) as exc:
            raise ScriptFailed(f"line {call.line}: {call.name}[]: {exc}") from exc

    def test(self, condition: Compare | Predicate) -> bool:
        """Whether a condition holds for this file."""
        if isinstance(condition, Predicate):
            result = self.call(condition.call)
            return result is True or _as_text(result) == "true"
        left = self.text(condition.left)
        right = self.text(condition.right)
        if left is None or right is None:
            # A missing value equals nothing and matches nothing, not even ".*" or
            # another missing value; so != and !~ hold.
            return condition.operator in ("!=", "!~")
        if condition.operator == "=":
            return left == right
        if condition.operator == "!=":
            return left != right
        try:
            matched = re.fullmatch(right, left) is not None
        except re.error as exc:
            raise ScriptFailed(f"regex {right!r} does not compile: {exc}") from exc
        return matched if condition.operator == "~" else not matched

    def run(self, statements: tuple[Statement, ...]) -> None:
        """Execute statements in order."""
        for statement in statements:
            self.execute(statement)

    def execute(self, statement: Statement) -> None:
        """Execute one statement."""
        if isinstance(statement, Assign):
            self.assign(
                statement.target,
                self.value(statement.value),
                only_if_present=statement.only_if_present,
            )
        elif isinstance(statement, Initialize):
            value = statement.value
            self.variables[statement.name] = (
                value if isinstance(value, ListValue) else self.value(value)
            )
        elif isinstance(statement, Delete):
            self.delete(statement.target)
        elif isinstance(statement, Call):
            self.call(statement)
        elif isinstance(statement, Echo):
            text = "" if statement.value is None else (self.text(statement.value) or "")
            self.result.echoes.append(text)
            log.info("anon_echo", text=text)
        elif isinstance(statement, Conditional):
            if self.test(statement.condition):
                self.execute(statement.then)
            elif statement.otherwise is not None:
                self.execute(statement.otherwise)
        elif isinstance(statement, IfChain):
            for condition, block in statement.branches:
                if self.test(condition):
                    self.run(block)
                    return
            if statement.otherwise is not None:
                self.run(statement.otherwise)
        elif isinstance(statement, RemoveAllPrivate):
            self.remove_private()
        elif isinstance(statement, Describe | Export | Version):
            pass  # declarations for XNAT's upload tools; nothing to do to the file


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _vr_for(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "LO" if (tag >> 16) % 2 == 1 else "UN"
    return vr.split(" or ")[0]


def _convert(value: Any, vr: str, tag: int) -> Any:
    if vr == "SQ":
        raise ScriptFailed(
            f"cannot assign a value to sequence ({tag >> 16:04X},{tag & 0xFFFF:04X})"
        )
    text = _as_text(value) or ""
    kind = _NUMERIC_VRS.get(vr)
    if kind is not None:
        try:
            numbers = [
                _wrap(int(float(part)), vr) if kind is int else kind(part)
                for part in text.split("\\")
                if part
            ]
        except ValueError:
            raise ScriptFailed(f"{text!r} is not a number for VR {vr}") from None
        return numbers[0] if len(numbers) == 1 else numbers
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return text.encode()
    if vr == "AT":  # eight hex digits each, as AT values read
        try:
            tags = [int(part.strip("()").replace(",", ""), 16) for part in text.split("\\") if part]
        except ValueError:
            raise ScriptFailed(f"{text!r} is not a tag (gggggeeee) for VR AT") from None
        return tags[0] if len(tags) == 1 else tags
    parts = text.split("\\")
    return parts if len(parts) > 1 else text


_BITS = {"US": 16, "SS": 16, "UL": 32, "SL": 32, "UV": 64, "SV": 64}


def _wrap(number: int, vr: str) -> int:
    """An integer too large for its VR keeps its low bits, as DicomEdit writes it."""
    bits = _BITS[vr]
    number &= (1 << bits) - 1
    if vr.startswith("S") and number >= 1 << (bits - 1):
        number -= 1 << bits
    return number
