"""What a person can ask of a session (SPEC 4.4, 7.3): one function per operation.

Each begins with a compare-and-set on the index, so two commands racing on one
session cannot both proceed: one wins, the other is told the state it found. The
command line and the HTTP API call these; they are safe while the daemon runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xnatd.anon.engine import ScriptFailed
from xnatd.archive.archiver import ARCHIVABLE, ARCHIVE_LEASE, ArchiveOutcome, Archiver
from xnatd.assembler.builder import Builder
from xnatd.config import Config
from xnatd.metrics import Metrics
from xnatd.routing import UNASSIGNED
from xnatd.store import Store
from xnatd.store.index.records import (
    ArchivedSession,
    ArchiveStatus,
    InstanceRecord,
    PrearchiveSession,
    Status,
)
from xnatd.store.layout import PrearchiveName

if TYPE_CHECKING:
    from xnatd.phi.clean import Region


class Refused(Exception):
    """The operation is not allowed in the session's current state; says why."""


CLAIM_LEASE = 600.0
REBUILDABLE = frozenset(
    {Status.READY, Status.HELD, Status.CONFLICT, Status.ERROR, Status.RECEIVING}
)
# A HELD session may be moved, deleted or rebuilt like a READY one; archiving it takes
# an owner's explicit acceptance of its findings.
MOVABLE = ARCHIVABLE | {Status.HELD}
_WHY = {
    Status.RECEIVING: "it is still receiving files; wait for the build",
    Status.BUILDING: "it is being built",
    Status.ARCHIVING: "it is being archived",
    Status.MOVING: "it is being moved",
    Status.DELETING: "it is being deleted",
    Status.HELD: (
        "possible patient information was found; review it, then archive with"
        " --accept-findings (owners)"
    ),
}


def _refusal(name: PrearchiveName, found: Status | None, operation: str) -> Refused:
    if found is None:
        return Refused(f"no prearchive session {name}")
    why = _WHY.get(found, "")
    return Refused(f"cannot {operation} {name}: it is {found.value}" + (f" ({why})" if why else ""))


class Operations:
    """What people ask of prearchive sessions (archive, rebuild, move, delete, clean
    pixels, commit), each claimed by compare-and-set so two askers never collide."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        metrics: Metrics,
        node: str,
        *,
        builder: Builder,
        archiver: Archiver,
    ) -> None:
        self.store = store
        self.config = config
        self.node = node
        self.metrics = metrics
        self.builder = builder
        self.archiver = archiver

    def _claim(
        self,
        name: PrearchiveName,
        allowed: frozenset[Status],
        to: Status,
        operation: str,
        *,
        lease: float = CLAIM_LEASE,
        archive_mode: str | None = None,
    ) -> PrearchiveSession:
        claimed = self.store.index.claim_session(
            name,
            allowed=allowed,
            to=to,
            node=self.node,
            lease=lease,
            now=time.time(),
            archive_mode=archive_mode,
        )
        if not isinstance(claimed, PrearchiveSession):
            raise _refusal(name, claimed, operation)
        return claimed

    # -- prearchive -------------------------------------------------------------------
    def archive(
        self, name: PrearchiveName, overwrite: str, actor: str, *, accept_findings: bool = False
    ) -> ArchiveOutcome:
        """Archive a READY, CONFLICT or ERROR session with an overwrite mode; a HELD one
        only with ``accept_findings`` (the caller checked the actor is an owner), which
        the audit trail records with the findings accepted."""
        allowed = MOVABLE if accept_findings else ARCHIVABLE
        session = self._claim(
            name,
            allowed,
            Status.ARCHIVING,
            "archive",
            lease=ARCHIVE_LEASE,
            archive_mode=overwrite,
        )
        if accept_findings and (accepted := self.store.prearchive.findings(session)):
            self.store.audit.record(
                "accept_findings",
                actor=actor,
                session=str(name),
                findings=len(accepted),
                what=sorted({f.what for f in accepted}),
            )
        return self.archiver.archive(
            session, overwrite, actor=actor, accept_findings=accept_findings
        )

    def rebuild(self, name: PrearchiveName, actor: str) -> Status | None:
        """Build now, whatever the idle timer says; returns READY or ERROR."""
        session = self._claim(name, REBUILDABLE, Status.BUILDING, "rebuild")
        self.store.audit.record("rebuild", actor=actor, session=str(name))
        return self.builder.build(session)

    def clean_pixels(
        self, name: PrearchiveName, regions: list[tuple[str, Region]] | None, actor: str
    ) -> tuple[int, Status | None]:
        """Blank pixel regions, then build (and so check) the session again.

        ``regions``: (scan, region) pairs; None blanks every pixel finding's region.
        Returns how many files were rewritten and the session's new status.

        Raises:
            Refused: the session is not READY, HELD, CONFLICT or ERROR, a scan or
                region does not exist, or a file's pixels cannot be rewritten.
        """
        from xnatd.phi.clean import CleanFailed, blank_regions  # numpy: only when cleaning

        session = self._claim(name, MOVABLE, Status.BUILDING, "clean the pixels of")
        try:
            records = self.store.prearchive.instances(session)
            targets = self._clean_targets(session, records, regions)
            done = []
            for record, wanted in targets.items():
                path = self.store.prearchive.instance_file(session, record)
                data, how = blank_regions(path.read_bytes(), wanted)
                self.store.edits.replace_file(session, record, data)
                done.append({"scan": record.scan, "file": record.file_name, "regions": len(wanted),
                             "how": how})  # fmt: skip
        except BaseException as exc:
            # Back to RECEIVING: the sweeper builds (and checks) it again, as it stands.
            self.store.index.set_status(session.id, expected=Status.BUILDING, to=Status.RECEIVING)
            if isinstance(exc, CleanFailed | OSError):
                raise Refused(f"cannot clean the pixels of {name}: {exc}") from None
            raise
        self.store.audit.record("clean_pixels", actor=actor, session=str(name), files=done)
        return len(done), self.builder.build(session)

    def _clean_targets(
        self,
        session: PrearchiveSession,
        records: list[InstanceRecord],
        regions: list[tuple[str, Region]] | None,
    ) -> dict[InstanceRecord, list[Region]]:
        from xnatd.phi.clean import Region

        by_file = {(r.scan, r.file_name): r for r in records}
        targets: dict[InstanceRecord, list[Region]] = {}
        if regions is None:  # every region the pixel check found
            for finding in self.store.prearchive.findings(session):
                region = Region.parse_where(finding.where) if finding.kind == "pixels" else None
                record = by_file.get((finding.scan, finding.file))
                if region is not None and record is not None:
                    targets.setdefault(record, []).append(region)
            return targets
        for scan, region in regions:
            # A region names a scan and a frame: it applies to that scan's image(s)
            # holding the frame (a single-file scan, as ultrasound and captures are).
            in_scan = [r for r in records if r.scan == scan]
            if not in_scan:
                raise Refused(f"no scan {scan} in {session.name}")
            for record in in_scan:
                targets.setdefault(record, []).append(region)
        return targets

    def commit(self, name: PrearchiveName, actor: str) -> str | None:
        """Build now, then let the project's policy decide (XNAT's ``action=commit``).

        Returns the accession ID when the policy archived it, else None (still in the
        prearchive: READY, CONFLICT or ERROR).
        """
        if self.rebuild(name, actor) is not Status.READY:
            return None
        session = self.store.index.get_session(name)
        if session is not None:
            self.archiver.after_build(session)
        archived = self.store.index.find_archived(name.project, name.label)
        if archived is None or self.store.index.get_session(name) is not None:
            return None
        return archived.id

    def settle_import(
        self, names: Sequence[PrearchiveName], *, archive: bool, overwrite: str, actor: str
    ) -> list[str]:
        """An import's sessions, once every file is stored: built now (not after the idle
        timer), then archived with ``overwrite`` (``--archive``) or left to the project
        policy. Returns the accession IDs of those archived."""
        archived: list[str] = []
        for name in names:
            if not archive:
                accession = self.commit(name, actor)
            elif self.rebuild(name, actor) is Status.READY:
                accession = self.archive(name, overwrite, actor).session_id
            else:
                accession = None
            if accession:
                archived.append(accession)
        return archived

    def move(self, name: PrearchiveName, project: str, actor: str) -> PrearchiveName:
        """Move to another project (Unassigned sessions too), then rebuild its document."""
        if project != UNASSIGNED and self.config().project(project) is None:
            raise Refused(f"{project!r} is not a configured project")
        if project == name.project:
            raise Refused(f"{name} is already in {project}")
        session = self._claim(name, MOVABLE, Status.MOVING, "move")
        try:
            target = self.store.edits.relocate(session, project)
        except OSError as exc:
            self.store.index.set_status(
                session.id, expected=Status.MOVING, to=Status.ERROR, reason=f"move failed: {exc}"
            )
            raise Refused(f"moving {name} failed: {exc}") from exc
        self.store.audit.record("move", actor=actor, session=str(target), **{"from": str(name)})
        relocated = self.store.index.get_session(target)
        if relocated is not None:
            try:  # the new project's script runs on the files it now holds
                prearchive = self.store.prearchive
                records = prearchive.take_digests(relocated, prearchive.instances(relocated))
                self.archiver.anonymize(relocated, records)
            except (ScriptFailed, OSError) as exc:
                reason = f"project anonymization after the move failed: {exc}"
                self.store.index.set_status(
                    relocated.id, expected=Status.MOVING, to=Status.ERROR, reason=reason
                )
                raise Refused(reason) from exc
        moved = self.store.index.claim_session(
            target,
            allowed=frozenset({Status.MOVING}),
            to=Status.BUILDING,
            node=self.node,
            lease=CLAIM_LEASE,
            now=time.time(),
        )
        if isinstance(moved, PrearchiveSession):
            self.builder.build(moved)
        return target

    def delete(self, name: PrearchiveName, actor: str) -> Path:
        """Remove from the prearchive; the files are kept under ``deleted/``."""
        session = self._claim(name, MOVABLE, Status.DELETING, "delete")
        kept = self.store.edits.remove(session)
        self.store.audit.record(
            "delete", actor=actor, session=str(name), files=session.files, kept=str(kept)
        )
        return kept

    # -- archived sessions -----------------------------------------------------------
    def _archived(self, session_id: str) -> ArchivedSession:
        found = self.store.index.get_archived(session_id)
        if found is None:
            raise Refused(f"no archived session {session_id}")
        return found

    def release(self, session_id: str, actor: str) -> ArchivedSession:
        """Quarantine to active."""
        self._archived(session_id)
        changed = self.store.index.set_archive_status(
            session_id,
            expected=frozenset({ArchiveStatus.QUARANTINE}),
            to=ArchiveStatus.ACTIVE,
            now=time.time(),
        )
        if not isinstance(changed, ArchivedSession):
            raise Refused(f"cannot release {session_id}: it is {changed}, not quarantine")
        self.store.archive.write_sidecar(changed)
        self.store.audit.record("release", actor=actor, session=session_id)
        return changed

    def delete_archived(self, session_id: str, *, purge: bool, actor: str) -> ArchivedSession:
        """Mark deleted (hidden, ID never reused); with purge, files move under deleted/."""
        current = self._archived(session_id)
        allowed = {ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE}
        if (
            purge
            and current.status is ArchiveStatus.DELETED
            and not current.path.startswith("deleted/")
        ):
            allowed.add(ArchiveStatus.DELETED)  # purge what an earlier delete kept in place
        changed = self.store.index.set_archive_status(
            session_id, expected=frozenset(allowed), to=ArchiveStatus.DELETED, now=time.time()
        )
        if not isinstance(changed, ArchivedSession):
            raise Refused(f"cannot delete {session_id}: it is already {changed}")
        if purge:
            path = self.store.archive.purge(changed)
            changed = self.store.index.set_archive_status(
                session_id,
                expected=frozenset({ArchiveStatus.DELETED}),
                to=ArchiveStatus.DELETED,
                path=path,
                now=time.time(),
            )
            assert isinstance(changed, ArchivedSession)
        self.store.archive.write_sidecar(changed)
        self.store.audit.record(
            "delete", actor=actor, session=session_id, purged=purge, path=changed.path
        )
        return changed
