"""Associations and their leases (tables ``associations`` and
``association_sessions``), storage commitments (``commitments``), and what a peer
may ask of the instance tables: which instances xnatd holds, what it received.
"""

from __future__ import annotations

import json
from typing import Any

from xnatd.store.index.backend import SqlBackend
from xnatd.store.index.records import PendingCommitment


def hold_session(connection: Any, association_id: str, session_id: int) -> None:
    """Let an open association (or import) delivering to a session hold its idle timer."""
    connection.execute(
        "INSERT INTO association_sessions (association_id, session_id)"
        " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM associations WHERE id = ?)"
        " ON CONFLICT DO NOTHING",
        (association_id, session_id, association_id),
    )


class AssociationTables(SqlBackend):
    """The index calls on associations, node leases and storage commitments."""

    # -- associations ------------------------------------------------------------
    def open_association(
        self,
        association_id: str,
        *,
        node: str,
        called_ae: str,
        calling_ae: str,
        peer: str,
        lease_until: float,
    ) -> None:
        # Neither this row nor its removal is flushed: after a power cut the node's
        # start drops its associations (drop_node_associations), and another node
        # reads a row left behind as held only until its lease ends.
        with self._write(flush=False) as connection:
            connection.execute(
                "INSERT INTO associations (id, node, called_ae, calling_ae, peer,"
                " opened, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET node = excluded.node,"
                " lease_until = excluded.lease_until",
                (association_id, node, called_ae, calling_ae, peer, lease_until, lease_until),
            )

    def close_association(self, association_id: str) -> None:
        with self._write(flush=False) as connection:  # see open_association
            connection.execute("DELETE FROM associations WHERE id = ?", (association_id,))

    def renew_leases(self, node: str, lease_until: float) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE associations SET lease_until = ? WHERE node = ?", (lease_until, node)
            )

    def drop_node_associations(self, node: str) -> int:
        with self._write() as connection:
            return connection.execute("DELETE FROM associations WHERE node = ?", (node,)).rowcount

    # -- storage commitment ------------------------------------------------------
    def add_commitment(self, commitment: PendingCommitment, *, next_try: float) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM commitments WHERE transaction_uid = ?", (commitment.transaction_uid,)
            )
            connection.execute(
                "INSERT INTO commitments (transaction_uid, calling_ae, called_ae, mode,"
                " instances, requested, next_try) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    commitment.transaction_uid,
                    commitment.calling_ae,
                    commitment.called_ae,
                    commitment.mode,
                    json.dumps([list(pair) for pair in commitment.instances]),
                    commitment.requested,
                    next_try,
                ),
            )

    def claim_commitments(self, *, now: float, node: str, lease: float) -> list[PendingCommitment]:
        with self._write() as connection:
            rows = connection.execute(
                "SELECT transaction_uid, calling_ae, called_ae, mode, instances, requested,"
                " attempts FROM commitments WHERE next_try <= ?"
                " AND (claim_until IS NULL OR claim_until < ?) ORDER BY next_try LIMIT 50"
                + self.SKIP_LOCKED,
                (now, now),
            ).fetchall()
            for row in rows:
                connection.execute(
                    "UPDATE commitments SET claimed_by = ?, claim_until = ?"
                    " WHERE transaction_uid = ?",
                    (node, now + lease, row[0]),
                )
        return [
            PendingCommitment(
                transaction_uid=row[0],
                calling_ae=row[1],
                called_ae=row[2],
                mode=row[3],
                instances=tuple((str(c), str(i)) for c, i in json.loads(row[4])),
                requested=row[5],
                attempts=row[6],
            )
            for row in rows
        ]

    def finish_commitment(self, transaction_uid: str) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM commitments WHERE transaction_uid = ?", (transaction_uid,)
            )

    def retry_commitment(self, transaction_uid: str, *, next_try: float) -> None:
        with self._write(flush=False) as connection:
            connection.execute(
                "UPDATE commitments SET next_try = ?, attempts = attempts + 1,"
                " claimed_by = NULL, claim_until = NULL WHERE transaction_uid = ?",
                (next_try, transaction_uid),
            )

    def held_instances(self, sop_instance_uids: list[str]) -> dict[str, tuple[str, bool]]:
        held: dict[str, tuple[str, bool]] = {}
        for start in range(0, len(sop_instance_uids), 500):  # SQLite's bound-variable limit
            chunk = tuple(sop_instance_uids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT sop_instance_uid, sop_class_uid FROM instances"
                f" WHERE sop_instance_uid IN ({marks})",
                chunk,
            ):
                held.setdefault(row["sop_instance_uid"], (row["sop_class_uid"], False))
            for row in self._rows(
                f"SELECT a.sop_instance_uid, a.sop_class_uid FROM archive_instances a"
                f" JOIN sessions s ON s.id = a.session_id"
                f" WHERE s.status != 'deleted' AND a.sop_instance_uid IN ({marks})",
                chunk,
            ):
                held[row["sop_instance_uid"]] = (row["sop_class_uid"], True)
        return held

    # -- receipts ----------------------------------------------------------------
    def received_instances(self, *, calling_ae: str | None, since: float) -> list[dict[str, Any]]:
        who = " AND i.calling_ae = ?" if calling_ae is not None else ""
        params: tuple[Any, ...] = (since, calling_ae) if calling_ae is not None else (since,)
        prearchived = self._rows(
            "SELECT i.calling_ae, i.sop_instance_uid, i.received, 'prearchive' AS place,"
            " p.project || '/' || p.timestamp || '/' || p.label AS session, p.project,"
            " p.label, p.status FROM instances i JOIN prearchive p ON p.id = i.session_id"
            " WHERE i.received >= ?" + who,
            params,
        )
        archived = self._rows(
            "SELECT i.calling_ae, i.sop_instance_uid, i.received, 'archive' AS place,"
            " s.id AS session, s.project, s.label, s.status FROM archive_instances i"
            " JOIN sessions s ON s.id = i.session_id WHERE i.received >= ?" + who,
            params,
        )
        return sorted(prearchived + archived, key=lambda row: (row["received"], row["session"]))
