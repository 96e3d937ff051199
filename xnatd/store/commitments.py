"""Storage Commitment (SPEC 10.4) as the store sees it: which requested instances xnatd
holds, durably or archived, and the requests whose report is still owed (in the
index, so they survive a restart and one node of several sends each)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from xnatd.store.audit import AuditTrail
from xnatd.store.index.base import Index
from xnatd.store.index.records import PendingCommitment

# Failure Reason (0008,1197), PS3.3 C.14.1.1
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass(frozen=True)
class Verdict:
    """What can be reported now: committed and failed instances, or still pending."""

    committed: tuple[tuple[str, str], ...]
    failed: tuple[tuple[str, str, int], ...]  # class, instance, Failure Reason
    pending: bool


class Commitments:
    """Storage Commitment requests: judging them against the index, keeping those owed."""

    def __init__(self, index: Index, audit: AuditTrail | None = None) -> None:
        self.index = index
        self.audit = audit

    def reported(self, calling_ae: str, transaction_uid: str, verdict: Verdict, via: str) -> None:
        """Audit a report sent (``xnatd receipts`` counts the committed instances)."""
        if self.audit is not None:
            self.audit.record(
                "commitment",
                actor=calling_ae,
                session=None,
                transaction_uid=transaction_uid,
                committed=[uid for _, uid in verdict.committed],
                failed=[[uid, reason] for _, uid, reason in verdict.failed],
                via=via,
            )

    def judge(self, instances: tuple[tuple[str, str], ...], mode: str) -> Verdict:
        """``durable``: every instance recorded is committed (its C-STORE success came
        after its file and row were durable). ``archived``: only archived ones; one
        held in the prearchive keeps the whole request pending. An instance not held
        at all (never received, rejected, deleted) or held under another SOP class
        fails."""
        held = self.index.held_instances([uid for _, uid in instances])
        committed, failed, pending = [], [], False
        for sop_class, uid in instances:
            found = held.get(uid)
            if found is None:
                failed.append((sop_class, uid, NO_SUCH_OBJECT_INSTANCE))
            elif found[0] != sop_class:
                failed.append((sop_class, uid, CLASS_INSTANCE_CONFLICT))
            elif mode == "archived" and not found[1]:
                pending = True
            else:
                committed.append((sop_class, uid))
        return Verdict(tuple(committed), tuple(failed), pending)

    def keep(self, commitment: PendingCommitment, *, delay: float = 0.0) -> None:
        """Keep a request whose report is owed, first looked at after ``delay`` seconds."""
        self.index.add_commitment(commitment, next_try=time.time() + delay)

    def claim(self, node: str, lease: float) -> list[PendingCommitment]:
        """The requests due a look, claimed by node for ``lease`` seconds."""
        return self.index.claim_commitments(now=time.time(), node=node, lease=lease)

    def delivered(self, transaction_uid: str) -> None:
        """Forget a request whose report was delivered."""
        self.index.finish_commitment(transaction_uid)

    def later(self, transaction_uid: str, delay: float) -> None:
        """Let go of a request's claim; look at it again in ``delay`` seconds."""
        self.index.retry_commitment(transaction_uid, next_try=time.time() + delay)
