"""Index backends, picked by name from the configuration's ``index`` key.

Like uvicorn's implementation table, only the chosen backend's module is imported.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from xnatd.store.index.base import Index

BACKENDS = {
    "sqlite": "xnatd.store.index.sqlite:SqliteIndex",
    "postgresql": "xnatd.store.index.postgres:PostgresIndex",
}


def open_index(spec: str, sqlite_file: Path) -> Index:
    """Open the index named by the configuration (``sqlite`` or a PostgreSQL URL).

    ``sqlite_file`` is where the SQLite index keeps its database (the data directory's
    ``index.sqlite``, from ``DataDir.index_file``); PostgreSQL ignores it.

    Raises:
        ValueError: no backend of that name is built.
    """
    name = "postgresql" if spec.startswith(("postgresql://", "postgres://")) else spec
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"index {name!r} is not supported (have: {', '.join(BACKENDS)})")
    module_name, _, attribute = target.partition(":")
    backend = getattr(importlib.import_module(module_name), attribute)
    return backend.open(spec, sqlite_file)
