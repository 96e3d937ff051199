"""Archiving one prearchive session: IDs, merge, files moved, documents, audit.

The session is already claimed ARCHIVING (a compare-and-set by whoever asked). The
steps are ordered so that a crash at any point is finished by running them again:
files are moved idempotently, and the index commit that makes the archived session
visible is also what removes the prearchive row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from xnatd.anon.engine import ScriptFailed
from xnatd.archive.anonymize import ProjectScripts
from xnatd.archive.autorun import run_autorun
from xnatd.archive.merge import merge_conflict, plan_merge
from xnatd.archive.policy import auto_archive_mode
from xnatd.config import Config
from xnatd.dicom import UnparsableDicom
from xnatd.metrics import Metrics
from xnatd.routing import UNASSIGNED
from xnatd.store.archiving import Archiving
from xnatd.store.documents import build_document
from xnatd.store.index.records import (
    ArchivedSession,
    ArchiveStatus,
    InstanceRecord,
    PrearchiveSession,
    ScanRow,
    Status,
)
from xnatd.store.layout import session_file
from xnatd.store.sessiontypes import session_type
from xnatd.store.xml import SessionDocument, xs_date

log = structlog.get_logger(__name__)

ARCHIVE_LEASE = 3600.0  # a claim older than this belongs to a process that died
ARCHIVABLE = frozenset({Status.READY, Status.CONFLICT, Status.ERROR})

# Project anonymization (SPEC 6) plugs in here: rewrites the prearchive files in
# place and returns the records that remain (a rejected file is dropped).
ProjectAnonymizer = Callable[[PrearchiveSession, list[InstanceRecord]], list[InstanceRecord]]


@dataclass(frozen=True)
class ArchiveOutcome:
    """What an archive did: archived, merged, conflict, held or error, and with what."""

    result: str  # archived | merged | conflict | error | held
    session_id: str | None = None
    reason: str | None = None
    files: int = 0


class Archiver:
    """Archives claimed prearchive sessions: the project script and its PHI check, the
    merge into the archive, the documents, the index commit, and autorun."""

    def __init__(
        self,
        store: Archiving,
        config: Callable[[], Config],
        metrics: Metrics,
        node: str,
        anonymize: ProjectAnonymizer | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.node = node
        self.anonymize = anonymize or ProjectScripts(store, config, metrics)

    # -- entry points ------------------------------------------------------------------
    def after_build(self, session: PrearchiveSession) -> None:
        """The sweeper's hook: apply the project's policy (or the session's AA:)."""
        mode = auto_archive_mode(
            session.project, session.auto_archive, self.config().project(session.project)
        )
        if mode is None:
            return
        claimed = self.store.claim(session.name, mode=mode, node=self.node, lease=ARCHIVE_LEASE)
        if claimed is not None:
            self.archive(claimed, mode, actor="auto-archive")

    def resume_stale(self) -> int:
        """Finish archives whose process died (their claim expired)."""
        stale = self.store.claim_stale(node=self.node, lease=ARCHIVE_LEASE)
        for session, mode in stale:
            self.archive(session, mode, actor="xnatd")
        return len(stale)

    # -- the work ------------------------------------------------------------------------
    def archive(
        self,
        session: PrearchiveSession,
        overwrite: str,
        *,
        actor: str,
        accept_findings: bool = False,
    ) -> ArchiveOutcome:
        """Archive a claimed (ARCHIVING) session. The project script's PHI check holds
        it (HELD) when it finds something, unless the findings were accepted."""
        started = time.perf_counter()
        bound = log.bind(session=str(session.name), study_uid=session.study_uid)
        try:
            outcome = self._archive(session, overwrite, actor, accept_findings)
        except (OSError, UnparsableDicom, ValueError, ScriptFailed) as exc:
            reason = f"archive failed: {exc}".replace("\n", " ")[:500]
            self.store.give_up(session, Status.ERROR, reason)
            self.store.audit("error", actor=actor, session=str(session.name), reason=reason)
            bound.error("archive_failed", reason=reason)
            outcome = ArchiveOutcome("error", reason=reason)
        self.metrics.sessions_archived.labels(session.project, outcome.result).inc()
        if outcome.result in ("archived", "merged"):
            self.metrics.archive_duration.observe(time.perf_counter() - started)
            bound.info(
                "session_archived",
                result=outcome.result,
                session_id=outcome.session_id,
                files=outcome.files,
                seconds=round(time.perf_counter() - started, 3),
            )
        return outcome

    def _conflict(self, session: PrearchiveSession, reason: str, actor: str) -> ArchiveOutcome:
        self.store.give_up(session, Status.CONFLICT, reason)
        self.store.audit("conflict", actor=actor, session=str(session.name), reason=reason)
        log.warning("archive_conflict", session=str(session.name), reason=reason)
        return ArchiveOutcome("conflict", reason=reason)

    def _held(self, session: PrearchiveSession, actor: str) -> ArchiveOutcome | None:
        """HELD when the project script left possible patient information and the site
        holds for it; the files stay rewritten, so an accepted archive resumes there."""
        if self.config().site.phi_check.headers != "hold":
            return None
        found = [f for f in self.store.findings(session) if f.stage == "archive"]
        if not found:
            return None
        reason = (
            f"possible patient information after the {session.project} project script:"
            f" {len(found)} findings ({', '.join(sorted({f.what for f in found}))})"
        )
        self.store.give_up(session, Status.HELD, reason)
        self.store.audit("held", actor=actor, session=str(session.name), reason=reason)
        log.warning("archive_held", session=str(session.name), reason=reason)
        return ArchiveOutcome("held", reason=reason)

    def _archive(
        self, session: PrearchiveSession, overwrite: str, actor: str, accept_findings: bool
    ) -> ArchiveOutcome:
        store = self.store
        project = self.config().project(session.project)
        if session.project == UNASSIGNED or project is None:
            return self._conflict(
                session, f"project {session.project} cannot be archived; move it first", actor
            )
        records = store.take_digests(session, store.instances(session))
        records = self.anonymize(session, records)
        if not accept_findings and (held := self._held(session, actor)):
            return held
        if not records:
            return self._conflict(session, "the session has no files to archive", actor)
        subject = session.subject or session.label
        xsi_type = session_type({r.sop_class_uid for r in records}, {r.modality for r in records})
        relative = store.relative_dir(session.project, session.label)
        existing = store.find_archived(session.project, session.label)
        if existing is not None and existing.status is ArchiveStatus.DELETED:
            if existing.path == relative:
                return self._conflict(
                    session,
                    f"deleted session {existing.id} still holds {relative}; "
                    f"purge it first (xnatd sessions delete {existing.id} --purge-files)",
                    actor,
                )
            existing = None
        if existing is not None:
            reason = merge_conflict(
                existing,
                study_uid=session.study_uid,
                subject=subject,
                xsi_type=xsi_type,
                overwrite=overwrite,
            )
            if reason:
                return self._conflict(session, reason, actor)

        now = time.time()
        subject_id, created = store.subject(session.project, subject, now=now)
        if created:
            store.audit(
                "subject_created",
                actor=actor,
                session=None,
                subject_id=subject_id,
                project=session.project,
                label=subject,
            )
        session_id = existing.id if existing else store.new_session_id()
        folder = store.folder(relative)
        plan = plan_merge(
            store.archived_instances(session_id) if existing else [],
            records,
            replace_files=overwrite == "delete",
        )
        source_folder = store.session_dir(session.name)
        for placement in plan.placements:
            if placement.action != "skip":
                store.place(
                    source_folder
                    / session_file(placement.incoming.scan, placement.incoming.file_name),
                    folder / session_file(placement.target.scan, placement.target.file_name),
                )
        for old in plan.obsolete:
            store.remove_file(folder / session_file(old.scan, old.file_name))

        result = list(plan.result)
        document = build_document(
            result,
            lambda record, tags: store.read_archived_header(folder, record, tags),
            project=session.project,
            label=session.label,
            subject_id=subject_id,
            study_uid=session.study_uid,
            session_id=session_id,
        )
        store.write_archive_documents(folder, session.label, document)
        if project.quarantine:
            status = ArchiveStatus.QUARANTINE
        else:
            status = existing.status if existing else ArchiveStatus.ACTIVE
        archived = ArchivedSession(
            id=session_id,
            project=session.project,
            subject_id=subject_id,
            subject=subject,
            label=session.label,
            study_uid=session.study_uid,
            xsi_type=document.xsi_type,
            modality=document.modality,
            date=xs_date(document.date),
            status=status,
            path=relative,
            archived=existing.archived if existing else now,
            modified=now,
        )
        store.write_sidecar(archived)
        store.commit(archived, result, _scan_rows(document), prearchive_id=session.id)
        store.discard_folder(session)
        event = "merge" if existing else "archive"
        store.audit(
            event,
            actor=actor,
            session=session_id,
            **{"from": [str(session.name)]},
            overwrite=overwrite,
            added=plan.added,
            replaced=plan.replaced,
            skipped=plan.skipped,
            files=len(result),
            status=status.value,
        )
        if project.autorun:
            results = run_autorun(project.autorun, archived, folder, _scan_rows(document))
            store.set_autorun(session_id, results)
            store.write_sidecar(ArchivedSession(**{**archived.__dict__, "autorun": tuple(results)}))
            store.audit("autorun", actor="xnatd", session=session_id, results=results)
        return ArchiveOutcome(
            "merged" if existing else "archived", session_id=session_id, files=len(result)
        )


def _scan_rows(document: SessionDocument) -> list[ScanRow]:
    return [
        ScanRow(
            scan=scan.id,
            series_uid=scan.uid,
            type=scan.series_description,
            series_description=scan.series_description,
            modality=scan.modality,
            files=len(scan.entries),
        )
        for scan in document.scans
    ]
