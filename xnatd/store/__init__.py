"""The store: the only code that knows the data directory's layout and the index.

``Store.open`` gives every part at once: the prearchive's faces (the durable write,
building sessions, changing them), the archive, the audit trail and the index behind
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xnatd.store.archive_tree import ArchiveStore
from xnatd.store.archiving import Archiving
from xnatd.store.assembly import Assembly
from xnatd.store.audit import AuditTrail
from xnatd.store.durable import remove_stray_parts
from xnatd.store.index import open_index
from xnatd.store.index.base import Index
from xnatd.store.layout import DataDir
from xnatd.store.prearchive import Prearchive
from xnatd.store.session_edits import SessionEdits


class DataDirError(Exception):
    """The data directory cannot be used; the message names it and says why."""


@dataclass
class Store:
    """Every part of the store, opened together over one data directory and index."""

    data: DataDir
    index: Index
    audit: AuditTrail
    prearchive: Prearchive  # the durable write (intake)
    assembly: Assembly  # building sessions (assembler)
    edits: SessionEdits  # changing sessions (operations)
    archiving: Archiving  # archiving them (archiver)
    archive: ArchiveStore
    site_id: str

    @classmethod
    def open(cls, data_dir: Path, index: str, *, site_id: str, min_free_disk: int) -> Store:
        """The store in ``data_dir`` with the index ``index`` (``sqlite`` or a PostgreSQL
        URL), creating the data directory's folders if needed; a file is refused while
        less than ``min_free_disk`` bytes are free.

        Raises:
            DataDirError: the data directory cannot be created or written.
        """
        data = DataDir(data_dir)
        problem = data.writable_problem()
        if problem is not None:
            raise DataDirError(problem)
        try:
            data.create()
        except OSError as exc:
            raise DataDirError(f"data directory {data.root}: {exc.strerror or exc}") from None
        opened = open_index(index, data.index_file)
        audit = AuditTrail(data.root, opened)
        tree = ArchiveStore(data, opened)
        return cls(
            data=data,
            index=opened,
            audit=audit,
            prearchive=Prearchive(data, opened, audit, min_free_disk=min_free_disk),
            assembly=Assembly(data, opened, audit),
            edits=SessionEdits(data, opened, audit),
            archiving=Archiving(data, opened, audit, tree, site_id),
            archive=tree,
            site_id=site_id,
        )

    def remove_stray_parts(self) -> list[Path]:
        """Temporary files of writers that died before their rename, in the prearchive
        and the archive (at start-up; a session's own at its build)."""
        removed = []
        for folder in (self.data.prearchive, self.data.root / "archive"):
            removed += remove_stray_parts(folder)
        return removed

    def close(self) -> None:
        """Close the index (and its hold); the store is unusable afterwards."""
        self.index.close()
