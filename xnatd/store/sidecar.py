"""``.xnatd.json`` in each session folder: what the index knows that the files do not.

Prearchive sessions keep their routing decisions (subject, ``AA:``, source);
archived sessions keep accession IDs, subject, status and autorun results. With
these, ``reindex`` rebuilds the index from the data directory alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xnatd.store.durable import write_durably

NAME = ".xnatd.json"


def write(folder: Path, values: dict[str, Any], root: Path) -> None:
    """Write ``.xnatd.json`` in folder, durably."""
    write_durably(folder / NAME, json.dumps(values, indent=1, sort_keys=True).encode(), root)


def read(folder: Path) -> dict[str, Any] | None:
    """A folder's ``.xnatd.json``, or None when it is missing or unreadable."""
    try:
        return json.loads((folder / NAME).read_text())
    except (OSError, ValueError):
        return None
