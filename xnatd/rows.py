"""What commands and the HTTP API show of a session: one definition of the fields (SPEC 7)."""

from __future__ import annotations

from typing import Any

from xnatd.store import Store
from xnatd.store.index.records import ArchivedSession, Finding, PrearchiveSession
from xnatd.units import iso


def prearchive_row(session: PrearchiveSession) -> dict[str, Any]:
    """The fields of ``prearchive list --json`` (SPEC 7)."""
    return {
        "name": str(session.name),
        "project": session.project,
        "timestamp": session.timestamp,
        "label": session.label,
        "subject": session.subject,
        "study_uid": session.study_uid,
        "status": session.status.value,
        "reason": session.reason,
        "scans": session.scans,
        "files": session.files,
        "last_modified": iso(session.last_modified),
    }


def finding_row(finding: Finding) -> dict[str, Any]:
    """One PHI-check finding as ``prearchive show --json`` lists it (SPEC 10.2)."""
    return {
        "kind": finding.kind,
        "scan": finding.scan,
        "file": finding.file,
        "where": finding.where,
        "what": finding.what,
        "stage": finding.stage,
    }


def archived_row(session: ArchivedSession, store: Store) -> dict[str, Any]:
    """The fields of ``sessions list --json`` (SPEC 7)."""
    return {
        "id": session.id,
        "project": session.project,
        "subject": session.subject,
        "subject_id": session.subject_id,
        "label": session.label,
        "date": session.date,
        "modality": session.modality,
        "xsi_type": f"xnat:{session.xsi_type}",
        "study_uid": session.study_uid,
        "scans": session.scans,
        "files": session.files,
        "status": session.status.value,
        "path": str(store.data.root / session.path),
    }
