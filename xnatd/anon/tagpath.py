"""DicomEdit tag paths, resolved over pydicom datasets.

``(0010,0010)``; digit wildcards ``X``/``x`` (any), ``#`` (odd), ``@`` (even);
private ``(0019,{SIEMENS MR HEADER}0C)`` resolved through its creator's block;
sequence items ``(0008,1115)[0]/(0008,1150)`` and ``[%]`` (every item); and a first
step of ``*/`` (any depth, top included), ``+/`` (one level or more) or ``./``
(exactly one level).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

_STEP = re.compile(r"^\(([0-9A-Fa-fXx#@]{4}),(?:\{([^}]*)\})?([0-9A-Fa-fXx#@]{2,4})\)$")


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
    group: str  # four hex digits, wildcards allowed
    element: str  # four hex digits, or two after a private creator
    creator: str | None = None
    item: str | None = None  # None (every item), "%" (every item) or an index

    @property
    def concrete(self) -> bool:
        return not re.search(r"[Xx#@]", self.group + self.element)

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
        for element in dataset:
            tag = element.tag
            if (
                tag.group % 2 == 1
                and 0x10 <= tag.element <= 0xFF
                and _hex_matches(self.group, tag.group)
                and str(element.value).strip() == self.creator
            ):
                yield tag.element, tag.group

    def items_of(self, dataset: Dataset, tag: int) -> list[Dataset]:
        element = dataset[tag]
        if element.VR != "SQ" or not element.value:
            return []
        items = list(element.value)
        if self.item is None or self.item == "%":
            return items
        index = int(self.item)
        return [items[index]] if 0 <= index < len(items) else []


@dataclass(frozen=True)
class TagPath:
    steps: tuple[Step, ...]
    level: str | None = None  # "*", "+", "." or None
    text: str = ""

    @classmethod
    def from_parts(cls, parts: list) -> TagPath:
        """From the grammar: an optional level wildcard token, then (TAG, item) steps."""
        level = None
        if parts and not isinstance(parts[0], tuple):
            level = str(parts[0])
            parts = parts[1:]
        steps = []
        for tag_text, item in parts:
            match = _STEP.match(tag_text)
            if match is None:
                raise ValueError(f"{tag_text} is not a tag")
            group, creator, element = match.groups()
            if (creator is None) != (len(element) == 4):
                raise ValueError(f"{tag_text} is not a tag")
            steps.append(Step(group.upper(), element.upper(), creator, item))
        text = (f"{level}/" if level else "") + "/".join(
            f"({s.group},{'{' + s.creator + '}' if s.creator else ''}{s.element})"
            + (f"[{s.item}]" if s.item is not None else "")
            for s in steps
        )
        return cls(tuple(steps), level, text)

    @classmethod
    def parse(cls, text: str) -> TagPath:
        """A tag path given as a string argument (``delete["(0010,0010)"]``).

        Raises:
            ValueError: not a tag path.
        """
        from xnatd.anon.script import ScriptError, parse

        try:
            script = parse(f"-{text.strip()}\n")
        except ScriptError as error:
            raise ValueError(f"{text!r} is not a tag path") from error
        return script.statements[0].target  # type: ignore[union-attr]

    @property
    def single_tag(self) -> int | None:
        """The tag when this is one concrete public top-level element."""
        if self.level or len(self.steps) != 1:
            return None
        step = self.steps[0]
        return int(step.group + step.element, 16) if step.concrete and not step.creator else None

    def __str__(self) -> str:
        return self.text

    # -- resolution ------------------------------------------------------------------
    def roots(self, dataset: Dataset) -> Iterator[Dataset]:
        """The datasets the first step is matched in."""
        if self.level is None:
            yield dataset
        elif self.level == "*":
            yield dataset
            yield from _nested(dataset, deep=True)
        elif self.level == "+":
            yield from _nested(dataset, deep=True)
        else:  # "."
            yield from _nested(dataset, deep=False)

    def find(self, dataset: Dataset) -> list[tuple[Dataset, int]]:
        """Existing elements the path names, as (dataset holding it, tag)."""
        found: list[tuple[Dataset, int]] = []
        for root in self.roots(dataset):
            found.extend(self._walk(root, 0))
        return found

    def _walk(self, dataset: Dataset, index: int) -> list[tuple[Dataset, int]]:
        step = self.steps[index]
        tags = step.tags_in(dataset)
        if index == len(self.steps) - 1:
            return [(dataset, tag) for tag in tags]
        found = []
        for tag in tags:
            for item in step.items_of(dataset, tag):
                found.extend(self._walk(item, index + 1))
        return found

    def parents_for_new(self, dataset: Dataset) -> list[Dataset]:
        """Datasets a missing last element can be created in (its parents must exist)."""
        parents: list[Dataset] = []
        for root in self.roots(dataset):
            level = [root]
            for step in self.steps[:-1]:
                level = [
                    item
                    for ds in level
                    for tag in step.tags_in(ds)
                    for item in step.items_of(ds, tag)
                ]
            parents.extend(level)
        return parents


def _nested(dataset: Dataset, *, deep: bool) -> Iterator[Dataset]:
    for tag in list(dataset.keys()):
        if dataset.get_item(tag).VR == "SQ":
            for item in dataset[tag].value or ():
                yield item
                if deep:
                    yield from _nested(item, deep=True)
