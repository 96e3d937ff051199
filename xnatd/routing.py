"""Headers -> project, subject and session label (SPEC section 3).

Pure: every function takes values and returns values, so routing is tested without
sockets or disk. Rules are compiled once, when the configuration loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from xnatd.dicom import Header, Tag

UNASSIGNED = "Unassigned"
DEFAULT_SESSION_LABEL = "dicom_upload"

# The three comment fields XNAT searches for "Project:", "Subject:", "Session:", "AA:".
COMMENT_FIELDS: tuple[int, ...] = (
    Tag.PatientComments,
    Tag.StudyComments,
    Tag.AdditionalPatientHistory,
)
RULE_VALUE_LIMIT = 64  # XNAT cuts the element value to 64 characters before matching

_RULE = re.compile(
    r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\):(.+?)(?::(\d+))?(?: t:(.*) r:(.*))?$", re.DOTALL
)
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_-]")


# A label names a folder (and ``LABEL.xml``, and their temporary names while written):
# well within the file system's 255 bytes a name.
LABEL_MAX = 128


def clean_label(value: str) -> str:
    """Turn every character outside ``[A-Za-z0-9_-]`` into ``_`` (XNAT's ``Labels``).

    A label longer than LABEL_MAX keeps its first characters and ends with ``_`` and
    the first 12 hex digits of the SHA-256 of the whole cleaned label: the same long
    value always gives the same label, and two that differ only past the cut do not
    share one.
    """
    label = _NOT_LABEL_CHAR.sub("_", value.strip())
    if len(label) <= LABEL_MAX:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:12]
    return f"{label[: LABEL_MAX - 13]}_{digest}"


def _comment_pattern(key: str) -> re.Pattern[str]:
    # Key preceded by start, whitespace, ',' or ';'; value [\w-]*; then a separator or end.
    return re.compile(
        r"(?:^|[\s,;])" + key + r"\s*:\s*([\w-]*)(?=[\s,;]|$)", re.IGNORECASE | re.ASCII
    )


_COMMENT_KEYS = {key: _comment_pattern(key) for key in ("Project", "Subject", "Session", "AA")}


def comment_values(header: Header, key: str) -> list[str]:
    """``key: value`` from each comment field that has one, in XNAT's order.

    Each field is a rule of its own: a project named in Patient Comments that does not
    exist lets Study Comments try.
    """
    pattern = _COMMENT_KEYS[key]
    values = []
    for tag in COMMENT_FIELDS:
        match = pattern.search(header.get(tag) or "")
        if match and match.group(1):
            values.append(match.group(1))
    return values


def comment_value(header: Header, key: str) -> str | None:
    """The first non-empty ``key: value`` in the comment fields."""
    values = comment_values(header, key)
    return values[0] if values else None


def _java_replacement(template: str) -> Callable[[re.Match[str]], str]:
    """Compile a Java ``replaceAll`` replacement (``$1`` groups, ``\\`` escapes)."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char == "\\" and i + 1 < len(template):
            literal.append(template[i + 1])
            i += 2
        elif char == "$" and i + 1 < len(template) and template[i + 1].isdigit():
            j = i + 1
            while j < len(template) and template[j].isdigit():
                j += 1
            parts.append("".join(literal))
            literal = []
            parts.append(int(template[i + 1 : j]))
            i = j
        else:
            literal.append(char)
            i += 1
    parts.append("".join(literal))

    def replace(match: re.Match[str]) -> str:
        return "".join(p if isinstance(p, str) else (match.group(p) or "") for p in parts)

    return replace


@dataclass(frozen=True)
class Rule:
    """One custom rule: ``(gggg,eeee):REGEX[:GROUP][ t:TARGET r:REPLACEMENT]``."""

    text: str
    tag: int
    pattern: re.Pattern[str]
    group: int
    target: re.Pattern[str] | None = None
    replacement: Callable[[re.Match[str]], str] | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Compile a rule.

        Raises:
            ValueError: the rule is not of XNAT's form or its regex does not compile.
        """
        match = _RULE.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not of the form (gggg,eeee):REGEX[:GROUP][ t:T r:R]")
        group_text, element_text, regex, group, target, replacement = match.groups()
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"regex {regex!r} does not compile: {exc}") from None
        group_number = int(group) if group is not None else 1
        if group_number > pattern.groups:
            raise ValueError(f"regex {regex!r} has no group {group_number}")
        compiled_target = None
        if target is not None:
            try:
                compiled_target = re.compile(target)
            except re.error as exc:
                raise ValueError(f"target {target!r} does not compile: {exc}") from None
        return cls(
            text=text,
            tag=int(group_text + element_text, 16),
            pattern=pattern,
            group=group_number,
            target=compiled_target,
            replacement=_java_replacement(replacement) if replacement is not None else None,
        )

    def extract(self, header: Header) -> str | None:
        """The rule's value for this header, or None when it does not apply."""
        value = header.get(self.tag)
        if value is None:
            return None
        match = self.pattern.fullmatch(value[:RULE_VALUE_LIMIT])
        if not match:
            return None
        result = match.group(self.group)
        if result is None:
            return None
        if self.target is not None and self.replacement is not None:
            result = self.target.sub(self.replacement, result)
        return result


@dataclass(frozen=True)
class RuleSet:
    """Custom rules for each of the three concepts, tried in order."""

    project: tuple[Rule, ...] = ()
    subject: tuple[Rule, ...] = ()
    session: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Explicit:
    """Values given with an upload; they win over every rule."""

    project: str | None = None
    subject: str | None = None
    session: str | None = None


@dataclass(frozen=True)
class Route:
    """Where one file goes."""

    project: str
    subject: str
    session: str
    auto_archive: bool | None = None


def _first(candidates: Sequence[str | None]) -> str | None:
    for candidate in candidates:
        if candidate:
            return candidate
    return None


def _auto_archive(header: Header) -> bool | None:
    """The first ``AA:`` that says true/t or false/f; other values have no opinion."""
    for value in comment_values(header, "AA"):
        lowered = value.lower()
        if lowered in ("t", "true"):
            return True
        if lowered in ("f", "false"):
            return False
    return None


def route(
    header: Header,
    *,
    resolve_project: Callable[[str], str | None],
    rule_sets: Sequence[RuleSet] = (),
    explicit: Explicit = Explicit(),
    default_project: str | None = None,
) -> Route:
    """Decide project, subject and session label for one file (SPEC 3.1).

    Args:
        header: the file's header values by tag.
        resolve_project: maps a candidate to a configured project ID (ID or alias),
            or None; a candidate that resolves to nothing lets the next rule try.
        rule_sets: the receiver's rules, then the site's.
        explicit: values given with an upload.
        default_project: the receiver's default project.
    """
    project = _resolve_first(
        resolve_project,
        [explicit.project]
        + [rule.extract(header) for rules in rule_sets for rule in rules.project]
        + comment_values(header, "Project")
        + [header.get(Tag.StudyDescription), header.get(Tag.AccessionNumber)],
    )
    if project is None and default_project:
        project = resolve_project(default_project)

    subject = _first(
        [explicit.subject]
        + [rule.extract(header) for rules in rule_sets for rule in rules.subject]
        + [comment_value(header, "Subject"), header.get(Tag.PatientName)]
    )
    session = _first(
        [explicit.session]
        + [rule.extract(header) for rules in rule_sets for rule in rules.session]
        + [comment_value(header, "Session"), header.get(Tag.PatientID)]
    )
    session_label = clean_label(session) if session else ""
    return Route(
        project=project or UNASSIGNED,
        subject=clean_label(subject) if subject else "",
        session=session_label or DEFAULT_SESSION_LABEL,
        auto_archive=_auto_archive(header),
    )


def _resolve_first(
    resolve: Callable[[str], str | None], candidates: Sequence[str | None]
) -> str | None:
    for candidate in candidates:
        if candidate:
            resolved = resolve(candidate.strip())
            if resolved is not None:
                return resolved
    return None


def project_resolver(projects: Mapping[str, Sequence[str]]) -> Callable[[str], str | None]:
    """Build a resolver from ``{project ID: aliases}``: exact match first, then any case."""
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for project_id, aliases in projects.items():
        for name in (project_id, *aliases):
            exact.setdefault(name, project_id)
            folded.setdefault(name.casefold(), project_id)

    def resolve(candidate: str) -> str | None:
        return exact.get(candidate) or folded.get(candidate.casefold())

    return resolve
