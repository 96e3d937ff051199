"""The store as the archiver uses it: the one interface between ``archive/`` and the
data directory and index.

A claimed (ARCHIVING) prearchive session is read, rewritten by its project's script
(``SessionEdits``), checked, and placed into the archive tree; its subject and
accession ID are allocated, its documents and sidecar written, and the whole is
committed to the index in one transaction, after which the prearchive folder goes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from xnatd.store.archive_tree import ArchiveStore
from xnatd.store.audit import AuditTrail
from xnatd.store.index.base import Index
from xnatd.store.index.records import (
    ArchivedSession,
    InstanceRecord,
    PrearchiveSession,
    ScanRow,
    Status,
)
from xnatd.store.layout import DataDir, PrearchiveName
from xnatd.store.session_edits import SessionEdits
from xnatd.store.xml import SessionDocument


class Archiving(SessionEdits):
    """Claims, prearchive reads and rewrites, the archive tree and the archive's rows."""

    def __init__(
        self, data: DataDir, index: Index, audit: AuditTrail, tree: ArchiveStore, site_id: str
    ) -> None:
        super().__init__(data, index, audit)
        self.tree = tree
        self.site_id = site_id

    # -- claims and outcomes -------------------------------------------------------------
    def claim(
        self, name: PrearchiveName, *, mode: str, node: str, lease: float
    ) -> PrearchiveSession | None:
        """Claim a READY session for archiving with ``mode``; None if it is not READY."""
        claimed = self.index.claim_session(
            name,
            allowed=frozenset({Status.READY}),
            to=Status.ARCHIVING,
            node=node,
            lease=lease,
            now=time.time(),
            archive_mode=mode,
        )
        return claimed if isinstance(claimed, PrearchiveSession) else None

    def claim_stale(self, *, node: str, lease: float) -> list[tuple[PrearchiveSession, str]]:
        """Archives whose process died (claim expired), claimed again, each with the
        overwrite mode it was started with."""
        stale = self.index.claim_stale_archives(now=time.time(), node=node, lease=lease)
        return [(session, self.index.archive_mode(session.id) or "none") for session in stale]

    def give_up(self, session: PrearchiveSession, to: Status, reason: str) -> None:
        """An archive that stops short: the session leaves ARCHIVING for ``to``."""
        self.index.set_status(session.id, expected=Status.ARCHIVING, to=to, reason=reason)

    # -- the archive side ------------------------------------------------------------------
    def relative_dir(self, project: str, label: str) -> str:
        """Where a session of ``project`` labelled ``label`` lives, from the data root."""
        return self.tree.relative_dir(project, label)

    def folder(self, relative: str) -> Path:
        """The archive folder of a relative path from ``relative_dir``."""
        return self.data.root / relative

    def find_archived(self, project: str, label: str) -> ArchivedSession | None:
        """The archived session with this label in this project, if any (deleted too)."""
        return self.index.find_archived(project, label)

    def archived_instances(self, session_id: str) -> list[InstanceRecord]:
        """The instances an archived session holds."""
        return self.index.archived_instances(session_id)

    def subject(self, project: str, label: str, *, now: float) -> tuple[str, bool]:
        """The subject's accession ID, created if new; and whether it was created."""
        return self.index.create_subject(project, label, prefix=self.site_id, now=now)

    def new_session_id(self) -> str:
        """A new experiment accession ID (``SITE_E00001``)."""
        return self.index.allocate_id("E", self.site_id)

    def place(self, source: Path, target: Path) -> None:
        """Move one file into the archive durably."""
        self.tree.place(source, target)

    def remove_file(self, path: Path) -> None:
        """Remove one archived file a merge replaced."""
        self.tree.remove_file(path)

    def read_archived_header(
        self, folder: Path, record: InstanceRecord, tags: frozenset[int]
    ) -> dict[int, str]:
        """Header of one archived file."""
        return self.tree.read_instance_header(folder, record, tags)

    def write_archive_documents(self, folder: Path, label: str, document: SessionDocument) -> None:
        """Write an archived session's catalogs and session document."""
        self.tree.write_documents(folder, label, document)

    def write_sidecar(self, session: ArchivedSession) -> None:
        """The archived session's own record beside its files (for reindex)."""
        self.tree.write_sidecar(session)

    def commit(
        self,
        archived: ArchivedSession,
        instances: Sequence[InstanceRecord],
        scans: Sequence[ScanRow],
        *,
        prearchive_id: int,
    ) -> None:
        """Record the archived session and drop its prearchive row, in one transaction."""
        self.index.commit_archive(
            archived, list(instances), list(scans), prearchive_id=prearchive_id
        )

    def set_autorun(self, session_id: str, results: list[dict]) -> None:
        """Record what the project's autorun commands did."""
        self.index.set_autorun(session_id, results)
