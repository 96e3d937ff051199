"""DicomEdit tag paths, resolved over pydicom datasets.

``(0010,0010)``; digit wildcards ``X``/``x`` (any), ``#`` (odd), ``@`` (even);
private ``(0019,{SIEMENS MR HEADER}0C)`` resolved through its creator's block;
sequence items ``(0008,1115)[0]/(0008,1150)`` and ``[%]`` (every item); and level
wildcards anywhere in the path: ``*`` (any depth, this level included), ``+`` (one
level or more) or ``.`` (exactly one level), as in ``*/(0010,0010)`` or
``(0008,1115)[%]/*/(0008,1155)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

_STEP = re.compile(r"^\(([0-9A-Fa-fXx#@]{4})[ \t]*,[ \t]*(?:\{([^}]*)\})?([0-9A-Fa-fXx#@]{2,4})\)$")
LEVELS = frozenset("*+.")
_EVEN, _ODD = set("02468ACE@"), set("13579BDF#")


def _digit_matches(pattern: str, digit: int) -> bool:
    if pattern in "Xx":
        return True
    if pattern == "#":
        return digit % 2 == 1
    if pattern == "@":
        return digit % 2 == 0
    return int(pattern, 16) == digit


def _hex_matches(pattern: str, value: int) -> bool:
    digits = [(value >> (4 * i)) & 0xF for i in reversed(range(len(pattern)))]
    return all(_digit_matches(p, d) for p, d in zip(pattern, digits, strict=True))


@dataclass(frozen=True)
class Step:
    """One tag of a path: group and element (wildcards allowed), private creator, item."""

    group: str  # four hex digits, wildcards allowed
    element: str  # four hex digits, or two after a private creator
    creator: str | None = None
    item: str | None = None  # None (every item), "%" (every item) or an index

    @property
    def concrete(self) -> bool:
        """Whether the step names one tag (no wildcard digits)."""
        return not re.search(r"[Xx#@]", self.group + self.element)

    @property
    def text(self) -> str:
        """The step as written: ``(0010,0010)``, ``(0019,{Creator}10)[0]``."""
        creator = "{" + self.creator + "}" if self.creator is not None else ""
        item = f"[{self.item}]" if self.item is not None else ""
        return f"({self.group},{creator}{self.element}){item}"

    def tags_in(self, dataset: Dataset) -> list[int]:
        """Tags of elements in this dataset that the step names."""
        if self.creator is None:
            if self.concrete:
                tag = int(self.group + self.element, 16)
                return [tag] if tag in dataset else []
            return [
                int(tag)
                for tag in dataset.keys()  # noqa: SIM118 - tags without converting values
                if _hex_matches(self.group, tag.group) and _hex_matches(self.element, tag.element)
            ]
        found = []
        for block, group in self.creator_blocks(dataset):
            for element in dataset.group_dataset(group):
                tag = element.tag
                if tag.element >> 8 == block and _hex_matches(self.element, tag.element & 0xFF):
                    found.append(int(tag))
        return found

    def creator_blocks(self, dataset: Dataset) -> Iterator[tuple[int, int]]:
        """(block, group) of every private creator element with this step's creator."""
        for tag in list(dataset.keys()):
            if tag.group % 2 == 1 and 0x10 <= tag.element <= 0xFF:
                if not _hex_matches(self.group, tag.group):
                    continue
                if str(dataset[tag].value).strip() == self.creator:
                    yield tag.element, tag.group

    def items_of(self, dataset: Dataset, tag: int) -> list[Dataset]:
        """The sequence items of ``tag`` this step's item selector names."""
        element = dataset[tag]
        if element.VR != "SQ" or not element.value:
            return []
        items = list(element.value)
        if self.item is None or self.item == "%":
            return items
        index = int(self.item)
        return [items[index]] if 0 <= index < len(items) else []


Part = Step | str  # a step, or a level wildcard "*", "+" or "."


@dataclass(frozen=True)
class TagPath:
    """A DicomEdit tag path: steps through nested sequences, with level wildcards."""

    parts: tuple[Part, ...]
    text: str = ""

    @classmethod
    def from_parts(cls, parts: Sequence[Any]) -> TagPath:
        """From the grammar: level wildcard tokens and (TAG text, item) steps, in order.

        Raises:
            ValueError: a step that is not a tag.
        """
        built: list[Part] = []
        for part in parts:
            if not isinstance(part, tuple):
                built.append(str(part))
                continue
            tag_text, item = part
            match = _STEP.match(tag_text)
            if match is None:
                raise ValueError(f"{tag_text} is not a tag")
            group, creator, element = match.groups()
            if (creator is None) != (len(element) == 4):
                raise ValueError(f"{tag_text} is not a tag")
            built.append(Step(group.upper(), element.upper(), creator, item))
        if not any(isinstance(part, Step) for part in built):
            raise ValueError("a tag path needs at least one tag")
        text = "/".join(part if isinstance(part, str) else part.text for part in built)
        return cls(tuple(built), text)

    # -- what the path says ----------------------------------------------------------
    @property
    def steps(self) -> tuple[Step, ...]:
        """The path's steps, without its level wildcards."""
        return tuple(part for part in self.parts if isinstance(part, Step))

    @property
    def level(self) -> str | None:
        """The level wildcard the path starts with, if any."""
        first = self.parts[0]
        return first if isinstance(first, str) else None

    @property
    def plural(self) -> bool:
        """Whether the path may name more than one element (level or digit wildcards, or
        every item of a sequence): DicomEdit refuses such a path as a value and as the
        target of ``:=``."""
        return any(
            isinstance(part, str) or not part.concrete or part.item == "%" for part in self.parts
        )

    @property
    def single_tag(self) -> int | None:
        """The tag when this is one concrete public top-level element."""
        if len(self.parts) != 1:
            return None
        step = self.parts[0]
        assert isinstance(step, Step)
        if step.creator or not step.concrete or step.item is not None:
            return None
        return int(step.group + step.element, 16)

    def direct_private(self) -> Step | None:
        """A step naming a private element by number instead of through its creator, or a
        group that is neither public nor private ((001#,0010), (001@,{X}10), (001x,...)):
        DicomEdit's grammar refuses both."""
        for step in self.steps:
            last = step.group[-1].upper()
            if step.creator is None and last not in _EVEN:
                return step
            if step.creator is not None and last not in _ODD:
                return step
        return None

    def __str__(self) -> str:
        return self.text

    # -- resolution ------------------------------------------------------------------
    def find(self, dataset: Dataset) -> list[tuple[Dataset, int]]:
        """Existing elements the path names, as (dataset holding it, tag). A last step
        with an item index names its sequence only when that item exists."""
        return self._walk([dataset], 0)

    def _walk(self, datasets: list[Dataset], index: int) -> list[tuple[Dataset, int]]:
        part = self.parts[index]
        last = index == len(self.parts) - 1
        if isinstance(part, str):
            expanded = [nested for ds in datasets for nested in _levels(ds, part)]
            if last:  # a trailing wildcard: every element at those levels
                return [(ds, int(tag)) for ds in expanded for tag in list(ds.keys())]
            return self._walk(expanded, index + 1)
        found: list[tuple[Dataset, int]] = []
        for ds in datasets:
            for tag in part.tags_in(ds):
                if last:
                    if part.item in (None, "%") or part.items_of(ds, tag):
                        found.append((ds, tag))
                else:
                    found.extend(self._walk(part.items_of(ds, tag), index + 1))
        return found

    def chains(self, dataset: Dataset) -> list[list[tuple[Dataset, int]]]:
        """Each element the path names with the sequence elements it lies in, outermost
        first (retainPrivateTags keeps those, and the creators of their blocks)."""
        chains: list[list[tuple[Dataset, int]]] = []

        def walk(ds: Dataset, index: int, above: list[tuple[Dataset, int]]) -> None:
            part = self.parts[index]
            last = index == len(self.parts) - 1
            if isinstance(part, str):
                for nested, path in _levels_with_path(ds, part, above):
                    if last:
                        chains.extend([*path, (nested, int(tag))] for tag in list(nested.keys()))
                    else:
                        walk(nested, index + 1, path)
                return
            for tag in part.tags_in(ds):
                if last:
                    chains.append([*above, (ds, tag)])
                else:
                    for item in part.items_of(ds, tag):
                        walk(item, index + 1, [*above, (ds, tag)])

        walk(dataset, 0, [])
        return chains

    def parents(self, dataset: Dataset) -> list[Dataset]:
        """Existing datasets the last element would be in (its parents exist)."""
        datasets = [dataset]
        for part in self.parts[:-1]:
            if isinstance(part, str):
                datasets = [nested for ds in datasets for nested in _levels(ds, part)]
                continue
            datasets = [
                item
                for ds in datasets
                for tag in part.tags_in(ds)
                for item in part.items_of(ds, tag)
            ]
        return datasets


def _levels(dataset: Dataset, wildcard: str) -> list[Dataset]:
    if wildcard == "*":
        return [dataset, *_nested(dataset, deep=True)]
    if wildcard == "+":
        return list(_nested(dataset, deep=True))
    return list(_nested(dataset, deep=False))


def _levels_with_path(
    dataset: Dataset, wildcard: str, above: list[tuple[Dataset, int]]
) -> Iterator[tuple[Dataset, list[tuple[Dataset, int]]]]:
    """As _levels, each dataset with the sequence elements leading to it."""
    if wildcard == "*":
        yield dataset, above
    for tag in list(dataset.keys()):
        if dataset.get_item(tag).VR == "SQ":
            for item in dataset[tag].value or ():
                path = [*above, (dataset, int(tag))]
                if wildcard == ".":
                    yield item, path
                else:
                    yield from _levels_with_path(item, "*", path)


def _nested(dataset: Dataset, *, deep: bool) -> Iterator[Dataset]:
    for tag in list(dataset.keys()):
        if dataset.get_item(tag).VR == "SQ":
            for item in dataset[tag].value or ():
                yield item
                if deep:
                    yield from _nested(item, deep=True)
