"""The index's tables, for every group: the schema version and the steps that reach it.

``_migrate`` in ``sql.py`` runs the steps a database has not had yet. Also here: the
columns the two instance tables share (``instances``, a prearchive session's files;
``archive_instances``, an archived session's), so both are written one way, and
``from_row``, which reads any row back into its record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from xnatd.store.index.records import InstanceRecord

SCHEMA_VERSION = 6
Record = TypeVar("Record", bound="DataclassInstance")

# One schema for both backends. Each entry moves it from version N to N+1; never edit
# a released one. {serial}, {real} and {big} are filled with each dialect's types.
SCHEMA: list[str] = [
    """
    CREATE TABLE prearchive (
        id {serial},
        project TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        label TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        study_uid TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        auto_archive INTEGER,
        source TEXT,
        files {big} NOT NULL DEFAULT 0,
        bytes {big} NOT NULL DEFAULT 0,
        created {real} NOT NULL,
        last_modified {real} NOT NULL,
        claimed_by TEXT,
        claim_until {real},
        xsi_type TEXT,
        UNIQUE (project, timestamp, label)
    );
    CREATE INDEX prearchive_key ON prearchive (project, study_uid, label);
    CREATE INDEX prearchive_status ON prearchive (status, last_modified);
    CREATE TABLE instances (
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size {big} NOT NULL,
        md5 TEXT NOT NULL,
        received {real} NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE associations (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        called_ae TEXT,
        calling_ae TEXT,
        peer TEXT,
        opened {real} NOT NULL,
        lease_until {real} NOT NULL
    );
    CREATE TABLE association_sessions (
        association_id TEXT NOT NULL REFERENCES associations (id) ON DELETE CASCADE,
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        PRIMARY KEY (association_id, session_id)
    );
    CREATE INDEX association_sessions_session ON association_sessions (session_id);
    CREATE TABLE audit (
        id {serial},
        time {real} NOT NULL,
        event TEXT NOT NULL,
        actor TEXT,
        session TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_session ON audit (session);
    """,
    """
    ALTER TABLE prearchive ADD COLUMN archive_mode TEXT;
    CREATE TABLE subjects (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        label TEXT NOT NULL,
        created {real} NOT NULL,
        UNIQUE (project, label)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        subject_id TEXT NOT NULL REFERENCES subjects (id),
        label TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        xsi_type TEXT NOT NULL,
        modality TEXT,
        date TEXT,
        status TEXT NOT NULL,
        path TEXT NOT NULL,
        archived {real} NOT NULL,
        modified {real} NOT NULL,
        autorun TEXT NOT NULL DEFAULT '[]'
    );
    CREATE UNIQUE INDEX sessions_live_label ON sessions (project, label)
        WHERE status != 'deleted';
    CREATE INDEX sessions_study ON sessions (study_uid);
    CREATE INDEX sessions_subject ON sessions (subject_id);
    CREATE TABLE archive_instances (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size {big} NOT NULL,
        md5 TEXT NOT NULL,
        received {real} NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE archive_scans (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        scan TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        type TEXT,
        series_description TEXT,
        modality TEXT,
        files {big} NOT NULL,
        PRIMARY KEY (session_id, scan)
    );
    CREATE TABLE id_counters (kind TEXT PRIMARY KEY, last {big} NOT NULL)
    """,
    """
    CREATE INDEX sessions_label ON sessions (label);
    CREATE INDEX sessions_date ON sessions (date);
    CREATE INDEX subjects_label ON subjects (label)
    """,
    """
    CREATE TABLE findings (
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        kind TEXT NOT NULL,
        stage TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        location TEXT NOT NULL,
        what TEXT NOT NULL
    );
    CREATE INDEX findings_session ON findings (session_id, sop_instance_uid)
    """,
    """
    CREATE TABLE commitments (
        transaction_uid TEXT PRIMARY KEY,
        calling_ae TEXT NOT NULL,
        called_ae TEXT NOT NULL,
        mode TEXT NOT NULL,
        instances TEXT NOT NULL,
        requested {real} NOT NULL,
        next_try {real} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        claim_until {real}
    );
    CREATE INDEX instances_sop ON instances (sop_instance_uid);
    CREATE INDEX archive_instances_sop ON archive_instances (sop_instance_uid)
    """,
    """
    ALTER TABLE prearchive ADD COLUMN build_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE prearchive ADD COLUMN retry_at {real}
    """,
]
assert len(SCHEMA) == SCHEMA_VERSION

INSTANCE_COLUMNS = (
    "sop_instance_uid, sop_class_uid, series_uid, series_number, instance_number, modality,"
    " scan, file_name, size, md5, received, calling_ae"
)


def insert_instance(table: str) -> str:
    """An INSERT of one row of ``instances`` or ``archive_instances``; see ``instance_values``."""
    return f"INSERT INTO {table} (session_id, {INSTANCE_COLUMNS}) VALUES ({', '.join('?' * 13)})"


def instance_values(owner: object, record: InstanceRecord) -> tuple[Any, ...]:
    """The values for ``insert_instance``: the owning session's ID, then the record's."""
    return (
        owner,
        record.sop_instance_uid,
        record.sop_class_uid,
        record.series_uid,
        record.series_number,
        record.instance_number,
        record.modality,
        record.scan,
        record.file_name,
        record.size,
        record.md5,
        record.received,
        record.calling_ae,
    )


def from_row(record: type[Record], row: Mapping[str, Any], **converted: Any) -> Record:
    """A record from a row with a column named after each of its fields; ``converted``
    gives the fields stored in another form (a status's text, JSON, 0 or 1)."""
    values = {field.name: row[field.name] for field in fields(record)}
    return record(**(values | converted))
