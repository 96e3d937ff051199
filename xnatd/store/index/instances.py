"""A prearchive session's files and what the PHI check found in them (tables
``instances`` and ``findings``); recording a file also moves its session's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xnatd.store.index.associations import hold_session
from xnatd.store.index.backend import SqlBackend
from xnatd.store.index.records import (
    ACCEPTS_FILES,
    PENDING_DIGEST,
    Finding,
    InstanceRecord,
    RecordResult,
    SessionClosed,
    Status,
    TakenDigest,
)
from xnatd.store.index.schema import INSTANCE_COLUMNS, insert_instance, instance_values

_INSERT_INSTANCE = insert_instance("instances")
# A later copy of an instance replaces every column but its key.
_UPSERT_INSTANCE = (
    _INSERT_INSTANCE
    + " ON CONFLICT (session_id, sop_instance_uid) DO UPDATE SET"
    + ",".join(f" {column} = excluded.{column}" for column in INSTANCE_COLUMNS.split(", ")[1:])
)


def _insert_findings(connection: Any, session_id: int, findings: Sequence[Finding]) -> None:
    for finding in findings:
        connection.execute(
            "INSERT INTO findings (session_id, sop_instance_uid, kind, stage, scan, file_name,"
            " location, what) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, finding.sop_instance_uid, finding.kind, finding.stage, finding.scan,
             finding.file, finding.where, finding.what),
        )  # fmt: skip


class InstanceTables(SqlBackend):
    """The index calls on a prearchive session's files and findings."""

    def record_instance(
        self,
        session_id: int,
        record: InstanceRecord,
        association_id: str | None,
        now: float,
        findings: Sequence[Finding] = (),
        digests: Sequence[TakenDigest] = (),
    ) -> RecordResult:
        # The one write per received file, so its commit is not flushed: the file
        # itself already is, and a row a power cut loses is recorded again from the
        # file when the session is built (Prearchive.adopt_unrecorded). Any other
        # change (a session reopened, an instance replaced) is flushed: the build
        # could not tell it from the files.
        with self._write(flush=False) as connection:
            row = connection.execute(
                "SELECT status FROM prearchive WHERE id = ?" + self.FOR_UPDATE, (session_id,)
            ).fetchone()
            if row is None or Status(row[0]) not in ACCEPTS_FILES:
                raise SessionClosed(f"session {session_id} no longer accepts files")
            old = connection.execute(
                "SELECT scan, file_name, size FROM instances"
                " WHERE session_id = ? AND sop_instance_uid = ?",
                (session_id, record.sop_instance_uid),
            ).fetchone()
            # Findings are flushed with the row: a power cut must not keep the file and
            # lose what the PHI check found in it.
            if old or findings or Status(row[0]) is not Status.RECEIVING:
                self._flush_on_commit(connection)
            connection.execute(
                _UPSERT_INSTANCE,
                instance_values(session_id, record),
            )
            if old:
                connection.execute(
                    "DELETE FROM findings WHERE session_id = ? AND sop_instance_uid = ?"
                    " AND stage = 'receive'",
                    (session_id, record.sop_instance_uid),
                )
            _insert_findings(connection, session_id, findings)
            _fill_digests(connection, digests)
            added_files = 0 if old else 1
            added_bytes = record.size - (old[2] if old else 0)
            connection.execute(
                "UPDATE prearchive SET status = 'RECEIVING', reason = NULL, claimed_by = NULL,"
                " claim_until = NULL, last_modified = ?, files = files + ?, bytes = bytes + ?"
                " WHERE id = ?",
                (now, added_files, added_bytes, session_id),
            )
            if association_id is not None:
                hold_session(connection, association_id, session_id)
        replaced = None
        if old and (old[0], old[1]) != (record.scan, record.file_name):
            replaced = (old[0], old[1])
        return RecordResult(new_instance=old is None, replaced=replaced)

    def calling_aes(self, session_id: int) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT calling_ae FROM instances WHERE session_id = ?"
            " AND calling_ae IS NOT NULL ORDER BY calling_ae",
            (session_id,),
        )
        return [r["calling_ae"] for r in rows]

    def findings(self, session_id: int) -> list[Finding]:
        rows = self._rows(
            "SELECT kind, scan, file_name, location, what, sop_instance_uid, stage"
            " FROM findings WHERE session_id = ? ORDER BY scan, file_name, location",
            (session_id,),
        )
        return [
            Finding(
                kind=r["kind"],
                scan=r["scan"],
                file=r["file_name"],
                where=r["location"],
                what=r["what"],
                sop_instance_uid=r["sop_instance_uid"],
                stage=r["stage"],
            )
            for r in rows
        ]

    def replace_findings(self, session_id: int, stage: str, findings: Sequence[Finding]) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM findings WHERE session_id = ? AND stage = ?", (session_id, stage)
            )
            _insert_findings(connection, session_id, findings)

    def instances(self, session_id: int) -> list[InstanceRecord]:
        rows = self._rows(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE session_id = ? ORDER BY received",
            (session_id,),
        )
        return [InstanceRecord(**row) for row in rows]

    def set_digests(self, session_id: int, digests: list[tuple[str, float, str]]) -> None:
        with self._write() as connection:
            connection.executemany(
                "UPDATE instances SET md5 = ? WHERE session_id = ? AND sop_instance_uid = ?"
                " AND received = ? AND md5 = ?",
                [
                    (md5, session_id, uid, received, PENDING_DIGEST)
                    for uid, received, md5 in digests
                ],
            )

    def record_digests(self, digests: Sequence[TakenDigest]) -> None:
        if digests:
            with self._write(flush=False) as connection:  # a lost one is taken at the build
                _fill_digests(connection, digests)

    def forget_instances(self, session_id: int, written: list[tuple[str, float]]) -> set[str]:
        gone: set[str] = set()
        size = 0
        with self._write() as connection:
            for uid, received in written:
                row = connection.execute(
                    "DELETE FROM instances WHERE session_id = ? AND sop_instance_uid = ?"
                    " AND received = ? RETURNING size",
                    (session_id, uid, received),
                ).fetchone()
                if row is not None:
                    gone.add(uid)
                    size += row[0]
            connection.execute(
                "UPDATE prearchive SET files = files - ?, bytes = bytes - ? WHERE id = ?",
                (len(gone), size, session_id),
            )
        return gone

    def adopt_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        with self._write() as connection:
            added = [
                record
                for record in records
                if connection.execute(
                    _INSERT_INSTANCE + " ON CONFLICT (session_id, sop_instance_uid) DO NOTHING",
                    instance_values(session_id, record),
                ).rowcount
                == 1
            ]
            connection.execute(
                "UPDATE prearchive SET files = files + ?, bytes = bytes + ? WHERE id = ?",
                (len(added), sum(record.size for record in added), session_id),
            )

    def replace_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM instances WHERE session_id = ?", (session_id,))
            connection.executemany(
                _INSERT_INSTANCE,
                [instance_values(session_id, record) for record in records],
            )
            connection.execute(
                "UPDATE prearchive SET files = ?, bytes = ? WHERE id = ?",
                (len(records), sum(r.size for r in records), session_id),
            )

    def move_instances_to_scan(self, session_id: int, sop_uids: list[str], scan: str) -> None:
        with self._write() as connection:
            connection.executemany(
                "UPDATE instances SET scan = ? WHERE session_id = ? AND sop_instance_uid = ?",
                [(scan, session_id, uid) for uid in sop_uids],
            )


def _fill_digests(connection: Any, digests: Sequence[TakenDigest]) -> None:
    """Give each row its digest, if the row is still the one that file made."""
    if digests:
        connection.executemany(
            "UPDATE instances SET md5 = ? WHERE session_id = ? AND sop_instance_uid = ?"
            " AND received = ? AND size = ? AND md5 = ?",
            [
                (d.md5, d.session_id, d.sop_instance_uid, d.received, d.size, PENDING_DIGEST)
                for d in digests
            ],
        )
