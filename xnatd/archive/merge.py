"""Merging incoming instances into an archived session (SPEC 5.3, reference 4.5).

Pure: the plan says where each incoming file goes and which existing files it
replaces; the archiver carries it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from xnatd.store.index.records import ArchivedSession, InstanceRecord
from xnatd.store.sessiontypes import lead_modality

_SUFFIXED = re.compile(r"^(.+)-[A-Z]+\d+$")


@dataclass(frozen=True)
class Placement:
    """One incoming file: where it goes in the archive, and whether it is added,
    replaces an archived file or is skipped.
    """

    incoming: InstanceRecord  # as it sits in the prearchive
    target: InstanceRecord  # as it will sit in the archive
    action: str  # "add", "replace" or "skip"


@dataclass(frozen=True)
class MergePlan:
    """What archiving a prearchive session into an archived one does, file by file."""

    placements: tuple[Placement, ...]
    obsolete: tuple[InstanceRecord, ...]  # existing files replaced under another path
    result: tuple[InstanceRecord, ...]  # the archived session's instances afterwards

    @property
    def added(self) -> int:
        """The files added."""
        return sum(p.action == "add" for p in self.placements)

    @property
    def replaced(self) -> int:
        """The archived files replaced."""
        return sum(p.action == "replace" for p in self.placements)

    @property
    def skipped(self) -> int:
        """The incoming files skipped (the archived copy kept)."""
        return sum(p.action == "skip" for p in self.placements)


def scan_ids_for(existing: list[InstanceRecord], incoming: list[InstanceRecord]) -> dict[str, str]:
    """Archive scan ID per incoming series UID.

    A series already archived keeps its scan; a new series keeps its number when
    free, else gets ``N-MR1`` style IDs (same number, other Series Instance UID).
    """
    scan_of_series = {record.series_uid: record.scan for record in existing}
    taken = set(scan_of_series.values())
    assigned: dict[str, str] = {}
    for record in sorted(incoming, key=lambda r: r.received):
        uid = record.series_uid
        if uid in assigned:
            continue
        if uid in scan_of_series:
            assigned[uid] = scan_of_series[uid]
            continue
        candidate = record.scan
        if candidate in taken:
            match = _SUFFIXED.match(candidate)
            base = match.group(1) if match else candidate
            k = 1
            candidate = f"{base}-{lead_modality(record.modality)}{k}"
            while candidate in taken:
                k += 1
                candidate = f"{base}-{lead_modality(record.modality)}{k}"
        assigned[uid] = candidate
        taken.add(candidate)
    return assigned


def plan_merge(
    existing: list[InstanceRecord], incoming: list[InstanceRecord], *, replace_files: bool
) -> MergePlan:
    """Plan a merge; an instance already archived (same SOP Instance UID) is never stored
    twice: kept with ``append`` (``replace_files=False``), replaced with ``delete``."""
    scans = scan_ids_for(existing, incoming)
    by_sop = {record.sop_instance_uid: record for record in existing}
    placements: list[Placement] = []
    obsolete: list[InstanceRecord] = []
    result = dict(by_sop)
    for record in incoming:
        target = replace(record, scan=scans[record.series_uid])
        old = by_sop.get(record.sop_instance_uid)
        if old is None:
            placements.append(Placement(record, target, "add"))
            result[record.sop_instance_uid] = target
        elif replace_files:
            placements.append(Placement(record, target, "replace"))
            if (old.scan, old.file_name) != (target.scan, target.file_name):
                obsolete.append(old)
            result[record.sop_instance_uid] = target
        else:
            placements.append(Placement(record, old, "skip"))
    return MergePlan(tuple(placements), tuple(obsolete), tuple(result.values()))


def merge_conflict(
    existing: ArchivedSession, *, study_uid: str, subject: str, xsi_type: str, overwrite: str
) -> str | None:
    """Why incoming data may not merge into an archived session with its label, or None."""
    if overwrite == "none":
        return (
            f"Session already exists as {existing.id}, retry with overwrite enabled "
            "(--overwrite append or delete)"
        )
    if existing.study_uid != study_uid:
        return f"Study Instance UID {study_uid} does not match {existing.id}'s {existing.study_uid}"
    if existing.subject != subject:
        return (
            f"{existing.label} already exists as {existing.id} "
            f"for another subject ({existing.subject})"
        )
    if existing.xsi_type != xsi_type:
        return (
            f"cross-modality merge refused: {existing.id} is {existing.xsi_type}, "
            f"the incoming session is {xsi_type}"
        )
    return None
