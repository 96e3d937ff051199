"""A file's header as rows of a table, nested sequences included, with the elements
the header PHI check flagged marked (their tag paths are the findings' ``where``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

MAX_VALUE = 200  # characters of a value shown; longer ones are cut


@dataclass(frozen=True)
class HeaderRow:
    """One element of the header table; ``depth`` is its sequence nesting."""

    path: str  # "(0040,A730)[0]/(0040,A160)", as findings name it
    depth: int
    tag: str
    name: str
    vr: str
    value: str
    flagged: bool


def _tag(element: pydicom.DataElement) -> str:
    return f"({element.tag.group:04X},{element.tag.element:04X})"


def _value(element: pydicom.DataElement) -> str:
    if element.VR == "SQ":
        return f"{len(element.value)} item(s)"
    value = element.value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    text = str(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def header_rows(path: Path, flagged: set[str]) -> list[HeaderRow]:
    """Every element of the file's header (pixel data left out), in file order."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    rows: list[HeaderRow] = []

    def walk(dataset: Dataset, prefix: str, depth: int) -> None:
        for element in dataset:
            path_here = prefix + _tag(element)
            rows.append(
                HeaderRow(
                    path_here,
                    depth,
                    _tag(element),
                    element.name,
                    str(element.VR),
                    _value(element),
                    path_here in flagged,
                )
            )
            if element.VR == "SQ":
                for number, item in enumerate(element.value):
                    walk(item, f"{path_here}[{number}]/", depth + 1)

    walk(ds.file_meta, "", 0)
    walk(ds, "", 0)
    return rows
