"""One incoming instance, from any door: parse the header, route, hand to the prearchive.

C-STORE, import, the inbox and HTTP all call :meth:`Intake.receive`; each maps the
:class:`Outcome` to its own answer (a DIMSE status, an HTTP code, an exit code).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from pydicom.dataset import Dataset

from xnatd.anon.apply import anonymize, parse
from xnatd.anon.chain import retains_institution
from xnatd.anon.engine import ScriptFailed
from xnatd.config import Config, Receiver
from xnatd.dicom import INTAKE_TAGS, Tag, UnparsableDicom, header_of
from xnatd.intake.acceptance import RejectedFile, checked_header, identity_problem
from xnatd.metrics import Metrics
from xnatd.payload import Payload
from xnatd.phi.headers import Needles, find_left, needles
from xnatd.routing import Explicit, route
from xnatd.store.digests import AfterReplyDigests
from xnatd.store.index.records import Finding, InstanceRecord, PrearchiveSession, SessionKey
from xnatd.store.layout import UnsafePath
from xnatd.store.prearchive import IncomingInstance, Prearchive, StoreRefused

log = structlog.get_logger(__name__)


class Result(StrEnum):
    """What became of one received file (each door maps it to its own answer)."""

    STORED = "stored"
    DROPPED = "dropped"  # reject[] in the site script: counted and audited, never stored
    REJECTED = "rejected"  # the file is at fault: do not retry it as is
    MISMATCHED = "mismatched"  # a C-STORE whose data set is of another SOP class
    REFUSED = "refused"  # we could not keep it now: the sender may retry
    NOT_PERMITTED = "not_permitted"  # routed to a project this door may not write to


@dataclass(frozen=True)
class Outcome:
    """One file's result, why, the session it went to, and what is left to do once
    the sender has its answer (the receiver calls ``afterwards`` then, if set)."""

    result: Result
    reason: str | None = None
    session: str | None = None  # PROJECT/TIMESTAMP/LABEL when stored
    study_uid: str | None = None
    afterwards: Callable[[], None] | None = None


@dataclass(frozen=True)
class Received:
    """A file as it came in, framed as Part 10 bytes."""

    data: Payload  # large objects stay on disk (the receiver's spill file)
    source: str  # the receiving AE title, or "import"
    calling_ae: str | None = None
    association_id: str | None = None
    receiver: Receiver | None = None
    explicit: Explicit = Explicit()
    anonymize: bool = True  # False when the uploader already anonymized (prevent_anon)
    projects: frozenset[str] | None = None  # where this door may write (an HTTP user's); None: any
    # C-STORE: the request's Affected SOP Class and Instance UIDs, which the data set's
    # (0008,0016) and (0008,0018) must equal.
    requested: tuple[str, str] | None = None


@dataclass
class SessionCache:
    """Sessions one association (or import) already opened, so the next file skips a lookup."""

    sessions: dict[SessionKey, PrearchiveSession] = field(default_factory=dict)
    files_by_session: dict[str, int] = field(default_factory=dict)
    # An upload that may have to be rolled back lists what it wrote (None: not kept;
    # an association's list would only grow).
    written: list[tuple[PrearchiveSession, InstanceRecord]] | None = None
    # An association's files are hashed after their answers (``Outcome.afterwards``);
    # an import's, which has no answer to wait for, when their sessions are built.
    digests: AfterReplyDigests | None = None


def _mismatch(
    requested: tuple[str, str], sop_class_uid: str, sop_instance_uid: str
) -> tuple[Result, str] | None:
    """How a C-STORE request and its data set disagree, if they do."""
    if requested[0] != sop_class_uid:
        return Result.MISMATCHED, "Affected SOP Class UID differs from the data set's"
    if requested[1] != sop_instance_uid:
        return Result.REJECTED, "Affected SOP Instance UID differs from the data set's"
    return None


def _routing_tags(config: Config) -> frozenset[int]:
    rule_sets = [config.routing, *(receiver.routing for receiver in config.receivers)]
    extra = {
        rule.tag
        for rules in rule_sets
        for concept in (rules.project, rules.subject, rules.session)
        for rule in concept
    }
    return INTAKE_TAGS | extra


class Intake:
    """The single entry point for every instance, whichever door it came through."""

    def __init__(
        self, config: Callable[[], Config], prearchive: Prearchive, metrics: Metrics
    ) -> None:
        self._config = config
        self._tags: tuple[int, frozenset[int]] | None = None
        self.prearchive = prearchive
        self.metrics = metrics
        # Each (source, calling AE, result)'s counters, looked up once: prometheus
        # client's labels() takes a lock and checks the names on every call.
        self._counted: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._latency: dict[str, Any] = {}

    def _tags_for(self, config: Config) -> frozenset[int]:
        # Decided once per configuration; a reload swaps the whole config object.
        if self._tags is None or self._tags[0] != id(config):
            self._tags = (id(config), _routing_tags(config))
        return self._tags[1]

    def receive(self, item: Received, cache: SessionCache | None = None) -> Outcome:
        """Route and durably store one instance; never raises for bad input."""
        started = time.perf_counter()
        outcome = self._receive(item, cache)
        labels = (item.source, item.calling_ae or "", outcome.result.value)
        counters = self._counted.get(labels)
        if counters is None:
            counters = self._counted[labels] = (
                self.metrics.instances.labels(*labels),
                self.metrics.bytes.labels(*labels),
            )
        counters[0].inc()
        counters[1].inc(len(item.data))
        if outcome.result is Result.STORED:
            latency = self._latency.get(item.source)
            if latency is None:
                latency = self._latency[item.source] = self.metrics.store_latency.labels(
                    item.source
                )
            latency.observe(time.perf_counter() - started)
        return outcome

    def _receive(self, item: Received, cache: SessionCache | None) -> Outcome:
        config = self._config()
        receiver = item.receiver
        script = config.site.script
        if not (item.anonymize and (receiver is None or receiver.anonymize)):
            script = None
        parsed = None
        try:
            # The whole file checked, the routing tags read on the way; a file to
            # anonymize is then parsed once (a large one without its pixels).
            header = checked_header(item.data, self._tags_for(config))
            if script is not None:
                parsed = parse(item.data, script)
        except (RejectedFile, UnparsableDicom, ScriptFailed) as exc:
            return self._rejected(item, str(exc))
        sop_class_uid = header.get(Tag.SOPClassUID, "")
        sop_instance_uid = header.get(Tag.SOPInstanceUID, "")
        problem = identity_problem(sop_class_uid, sop_instance_uid)
        if problem is not None:
            return self._rejected(item, f"{problem} in the data set")
        if item.requested is not None:
            mismatch = _mismatch(item.requested, sop_class_uid, sop_instance_uid)
            if mismatch is not None:
                return self._rejected(item, mismatch[1], mismatch[0])
        rule_sets = ([receiver.routing] if receiver else []) + [config.routing]
        decided = route(
            header,
            resolve_project=config.resolve_project,
            rule_sets=rule_sets,
            explicit=item.explicit,
            default_project=receiver.default_project if receiver else None,
        )
        if item.projects is not None and decided.project not in item.projects:
            return Outcome(
                Result.NOT_PERMITTED,
                f"routed to project {decided.project}, which this user may not upload to",
            )
        data = item.data
        findings: tuple[Finding, ...] = ()
        if script is not None and parsed is not None:
            checking = config.site.phi_check.headers != "off"
            wanted = (  # as the sender gave them; what a profile keeps on purpose left out
                needles(parsed.dataset, institution=not retains_institution(script))
                if checking
                else None
            )
            variables = {
                "project": decided.project,
                "subject": decided.subject,
                "session": decided.session,
            }
            try:
                anonymized = anonymize(script, parsed, variables)
            except ScriptFailed as exc:
                return self._script_problem(item, "error", f"site anonymization failed: {exc}")
            if anonymized is None:
                return self._script_problem(item, "reject", "rejected by the site script")
            data = anonymized
            # Layout and grouping follow the anonymized header (UIDs may be hashed).
            header = header_of(parsed.dataset, self._tags_for(config))
            if wanted is not None:
                findings = self._check_headers(parsed.dataset, wanted)
        study_uid = header.get(Tag.StudyInstanceUID, "")
        key = SessionKey(decided.project, study_uid, decided.session)
        incoming = IncomingInstance(
            header=header,
            route=decided,
            data=data,
            source=item.source,
            calling_ae=item.calling_ae,
            association_id=item.association_id,
            findings=findings,
        )
        try:
            stored = self.prearchive.store(
                incoming,
                session=cache.sessions.get(key) if cache else None,
                digests=cache.digests if cache else None,
            )
        except StoreRefused as exc:
            log.error("store_refused", reason=str(exc), study_uid=study_uid)
            return Outcome(Result.REFUSED, str(exc), study_uid=study_uid)
        except UnsafePath as exc:
            return self._rejected(item, f"unsafe header value: {exc}")
        name = str(stored.session.name)
        if cache is not None:
            cache.sessions[key] = stored.session
            cache.files_by_session[name] = cache.files_by_session.get(name, 0) + 1
            if cache.written is not None and stored.new_instance and stored.record is not None:
                cache.written.append((stored.session, stored.record))
        return Outcome(
            Result.STORED, session=name, study_uid=study_uid, afterwards=stored.afterwards
        )

    def _check_headers(self, dataset: Dataset, wanted: Needles) -> tuple[Finding, ...]:
        """The PHI check after the site script: what it left of the sender's identifying
        values, as findings (where and what kind, never the value)."""
        findings = tuple(
            Finding(kind="header", scan="", file="", where=leak.where, what=leak.what)
            for leak in find_left(dataset, wanted)
        )
        for finding in findings:
            self.metrics.phi_findings.labels("header", finding.what).inc()
        return findings

    def _script_problem(self, item: Received, kind: str, reason: str) -> Outcome:
        counter = (
            self.metrics.anonymization_rejects
            if kind == "reject"
            else self.metrics.anonymization_errors
        )
        counter.labels("site").inc()
        self.prearchive.audit(
            kind,
            actor=item.calling_ae or item.source,
            session=None,
            reason=reason,
            source=item.source,
        )
        log.warning("site_script_" + kind, reason=reason, calling_ae=item.calling_ae)
        if kind == "reject":
            return Outcome(Result.DROPPED, reason)
        return Outcome(Result.REFUSED, reason)

    def _rejected(self, item: Received, reason: str, result: Result = Result.REJECTED) -> Outcome:
        log.warning("instance_rejected", reason=reason, calling_ae=item.calling_ae)
        self.prearchive.audit(
            "reject",
            actor=item.calling_ae or item.source,
            session=None,
            reason=reason,
            source=item.source,
        )
        return Outcome(result, reason)
