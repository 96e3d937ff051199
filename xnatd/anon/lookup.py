"""Lookup tables for DicomEdit's ``lookup[key-type, key]``.

A table is a text file of ``KEY-TYPE/KEY = VALUE`` lines (``pn/Doe^John = SUBJ001``,
``id/12345 = SUBJ001``); blank lines and lines starting with ``#`` or ``//`` are ignored, and
space around ``=`` is not part of the key or value. Sites keep the identities they
map in it, outside the script.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


class LookupTableError(ValueError):
    """A table line that is not ``KEY-TYPE/KEY = VALUE``, or a key given twice."""


def parse_lookup_table(text: str, source: str = "<text>") -> Mapping[str, str]:
    """The table's entries by ``key-type/key``.

    Raises:
        LookupTableError: naming the source and the line.
    """
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        key, equals, value = line.partition("=")
        key_type, slash, name = key.strip().partition("/")
        if not equals or not slash or not key_type or not name.strip():
            raise LookupTableError(f"{source}, line {number}: expected KEY-TYPE/KEY = VALUE")
        key = f"{key_type.strip()}/{name.strip()}"
        if key in entries:
            raise LookupTableError(f"{source}, line {number}: {key} is already in the table")
        entries[key] = value.strip()
    return MappingProxyType(entries)


def load_lookup_table(path: Path) -> Mapping[str, str]:
    """Read a table file.

    Raises:
        LookupTableError: a malformed line.
        OSError: the file cannot be read.
    """
    return parse_lookup_table(path.read_text(encoding="utf-8"), str(path))
