"""The index's record types: what its calls take and return, one per kind of row.

No table is owned here; ``schema.py`` has the tables these values are stored in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from xnatd.store.layout import PrearchiveName


class Status(StrEnum):
    """A prearchive session's state (SPEC 4.3): XNAT's prearchive statuses, plus HELD."""

    RECEIVING = "RECEIVING"
    BUILDING = "BUILDING"
    READY = "READY"
    HELD = "HELD"  # built, with possible patient information found (SPEC 10.2)
    ARCHIVING = "ARCHIVING"
    MOVING = "MOVING"
    DELETING = "DELETING"
    CONFLICT = "CONFLICT"
    ERROR = "ERROR"


# A row's MD5 until it is taken: a received file's on its receiving thread once the
# response has gone out (``TakenDigest``), any other file's when its session is built.
PENDING_DIGEST = ""

# New files join a session in these states (reopening it); in any other state
# (ARCHIVING, MOVING, DELETING) they start a new prearchive session.
ACCEPTS_FILES = frozenset(
    {Status.RECEIVING, Status.BUILDING, Status.READY, Status.HELD, Status.CONFLICT, Status.ERROR}
)


class ArchiveStatus(StrEnum):
    """An archived session's state; a deleted one keeps its row (its ID is never reused)."""

    ACTIVE = "active"
    QUARANTINE = "quarantine"
    DELETED = "deleted"


@dataclass(frozen=True)
class PendingCommitment:
    """A Storage Commitment request (SPEC 10.4) whose N-EVENT-REPORT is still owed."""

    transaction_uid: str
    calling_ae: str  # the requester, who gets the report
    called_ae: str  # the receiver it asked, which sends it
    mode: str  # durable | archived
    instances: tuple[tuple[str, str], ...]  # (SOP Class UID, SOP Instance UID)
    requested: float
    attempts: int = 0


class SessionClosed(Exception):
    """The session stopped accepting files between lookup and record; open another."""


@dataclass(frozen=True)
class SessionKey:
    """Files are grouped by (project, Study Instance UID, session label)."""

    project: str
    study_uid: str
    label: str


@dataclass(frozen=True)
class PrearchiveSession:
    """One prearchive session row, with its scan, file and byte counts."""

    id: int
    project: str
    timestamp: str
    label: str
    subject: str
    study_uid: str
    status: Status
    reason: str | None
    auto_archive: bool | None
    source: str | None
    scans: int
    files: int
    bytes: int
    created: float
    last_modified: float
    xsi_type: str | None = None
    build_attempts: int = 0  # failed builds in a row that may succeed when retried
    retry_at: float | None = None  # when the next of them is due (an ERROR session)

    @property
    def name(self) -> PrearchiveName:
        """The session's PROJECT/TIMESTAMP/LABEL name (its folder)."""
        return PrearchiveName(self.project, self.timestamp, self.label)


@dataclass(frozen=True)
class InstanceRecord:
    """One stored file of a prearchive session."""

    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    series_number: str
    instance_number: str
    modality: str
    scan: str
    file_name: str
    size: int
    md5: str  # PENDING_DIGEST until taken (``TakenDigest``, ``SessionFiles.take_digests``)
    received: float
    calling_ae: str | None = None


class TakenDigest(NamedTuple):
    """A received file's MD5, for its row if the row is still the one that file made
    (same ``received`` and ``size``) and still without one."""

    session_id: int
    sop_instance_uid: str
    received: float
    size: int
    md5: str


@dataclass(frozen=True)
class ScanRow:
    """One archived scan, for search by type and series description."""

    scan: str
    series_uid: str
    type: str | None
    series_description: str | None
    modality: str | None
    files: int


@dataclass(frozen=True)
class ArchivedSession:
    """One archived session row (an XNAT experiment), with its accession IDs."""

    id: str  # SITE_E00001
    project: str
    subject_id: str  # SITE_S00001
    subject: str  # the subject's label
    label: str
    study_uid: str
    xsi_type: str
    modality: str | None
    date: str | None  # YYYY-MM-DD
    status: ArchiveStatus
    path: str  # relative to the data directory
    archived: float
    modified: float
    scans: int = 0
    files: int = 0
    bytes: int = 0
    autorun: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SessionFilter:
    """Which archived sessions ``list_archived`` returns: every field set must match."""

    project: str | None = None
    subject: str | None = None  # label or accession ID
    label: str | None = None
    modality: str | None = None
    since: str | None = None  # YYYY-MM-DD, on the session date
    until: str | None = None
    study_uid: str | None = None
    scan_type: str | None = None  # matches scan type or series description, any case
    statuses: tuple[ArchiveStatus, ...] = (ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)


@dataclass(frozen=True)
class RecordResult:
    """What recording an instance changed."""

    new_instance: bool
    # (scan, file name) of an earlier file of the same SOP instance, now unused
    replaced: tuple[str, str] | None


@dataclass(frozen=True)
class Finding:
    """Possible patient information in one file (SPEC 10.2); never the value itself."""

    kind: str  # "header" or "pixels"
    scan: str
    file: str  # the file's name in its scan folder
    where: str  # a tag path "(0040,A730)[0]/(0040,A160)", or a pixel region and frame
    what: str  # what kind of value: "patient name", "birth date", ...
    sop_instance_uid: str = ""
    stage: str = "receive"  # where the check ran: receive (site script), archive, build


@dataclass(frozen=True)
class AuditEvent:
    """One audit trail entry, as the index numbered and stored it."""

    id: int
    time: float
    event: str
    actor: str | None
    session: str | None
    details: dict[str, Any]
