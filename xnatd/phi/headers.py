"""The header check (SPEC 10.2): identifying values a sender gave, found again anywhere in
the data set that anonymization left.

Pure: it takes data sets and returns findings. Before a script runs, ``needles`` takes
the values of the identifying attributes (names, IDs, birth date, addresses, phone
numbers, accession number, institution, physicians and operators) as the sender gave
them; after it ran, ``find_left`` walks every element of the result (nested sequences,
private elements, structured report text, person names) and reports where each value
is still found and what kind it is. A finding never carries the value itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

# The attributes whose values identify a patient (DICOM PS3.15 Annex E's table, those
# the Basic Profile removes or replaces), and the kind each finding is reported as.
IDENTIFYING: dict[int, str] = {
    0x00100010: "patient name",
    0x00101001: "patient name",  # Other Patient Names
    0x00101005: "patient name",  # Patient's Birth Name
    0x00101060: "patient name",  # Patient's Mother's Birth Name
    0x00100020: "patient id",
    0x00101000: "patient id",  # Other Patient IDs
    0x00101090: "patient id",  # Medical Record Locator
    0x00380010: "patient id",  # Admission ID
    0x00100030: "birth date",
    0x00101040: "address",  # Patient's Address
    0x00080081: "address",  # Institution Address
    0x00080092: "address",  # Referring Physician's Address
    0x00102154: "phone number",  # Patient's Telephone Numbers
    0x00080094: "phone number",  # Referring Physician's Telephone Numbers
    0x00080050: "accession number",
    0x00080080: "institution",
    0x00081040: "institution",  # Institutional Department Name
    0x00080090: "staff name",  # Referring Physician's Name
    0x00081050: "staff name",  # Performing Physician's Name
    0x00081060: "staff name",  # Name of Physician(s) Reading Study
    0x00081070: "staff name",  # Operators' Name
    0x00321032: "staff name",  # Requesting Physician
}
INSTITUTION_KINDS = frozenset({"institution", "staff name"})
OTHER_PATIENT_IDS_SEQUENCE = 0x00101002
PIXEL_DATA_GROUP = 0x7FE0
# Values a sender uses for "nobody": never a finding when left in place.
PLACEHOLDERS = frozenset(
    {"", "ANONYMOUS", "ANONYMIZED", "ANON", "UNKNOWN", "NONE", "NULL", "N/A", "NA", "REMOVED",
     "DELETED", "XXX", "PATIENT", "0", "00000000"}
)  # fmt: skip
MIN_WORD = 3  # a name part shorter than this is too common to search for on its own
TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "AE", "CS"})
RAW_VRS = frozenset({"UN", "OB"})  # private data that may hide text
RAW_LIMIT = 65536  # bytes of one private binary element searched


@dataclass(frozen=True)
class Leak:
    """One identifying value found after anonymization: where (a tag path) and what."""

    where: str
    what: str


@dataclass(frozen=True)
class Needles:
    """The values to look for as one pattern (one search per element, longest value
    first), and the kind of each value."""

    pattern: re.Pattern[str] | None
    kinds: dict[str, str]
    quick: re.Pattern[bytes] | None = None  # any of them in raw bytes, case-insensitive

    def __bool__(self) -> bool:
        return self.pattern is not None


def _normal(text: str) -> str:
    """Upper case, person-name separators and runs of spaces as one space."""
    return " ".join(text.upper().replace("^", " ").replace("=", " ").split())


def _values(dataset: Dataset, tag: int) -> Iterator[str]:
    element = dataset.get(BaseTag(tag))
    if element is None or element.value is None or element.VR == "SQ":
        return
    values = element.value if element.VM > 1 else [element.value]
    for value in values:
        yield str(value)


def needles(dataset: Dataset, *, institution: bool = True) -> Needles:
    """The identifying values of ``dataset`` (the file as the sender sent it).

    ``institution=False`` leaves out institution and staff names (a profile option that
    keeps them, ``retain-institution-identity``).
    """
    wanted: dict[str, str] = {}
    sources = [dataset]
    others = dataset.get(BaseTag(OTHER_PATIENT_IDS_SEQUENCE), None)
    for item in (others.value if others is not None else None) or []:
        if isinstance(item, Dataset):
            sources.append(item)
    for source in sources:
        for tag, what in IDENTIFYING.items():
            if not institution and what in INSTITUTION_KINDS:
                continue
            for value in _values(source, tag):
                text = _normal(value)
                if text in PLACEHOLDERS or len(text) < 2 or not any(c.isalnum() for c in text):
                    continue  # "ANONYMOUS", "----": nobody's name
                wanted.setdefault(text, what)
                if what.endswith("name") and " " in text:
                    for part in text.split(" "):  # "DOE^JOHN" left as "John Doe" in a report
                        if len(part) >= MIN_WORD and part not in PLACEHOLDERS:
                            wanted.setdefault(part, what)
    if not wanted:
        return Needles(None, {})
    ordered = sorted(wanted, key=len, reverse=True)
    alternatives = "|".join(re.escape(text) for text in ordered)
    # The quick pattern runs on undecoded bytes: a space in a value may be any run of
    # person-name separators or spaces there.
    loose = b"|".join(
        rb"[\s^=]+".join(re.escape(word.encode("latin-1", "replace")) for word in text.split())
        for text in ordered
    )
    return Needles(
        re.compile(rf"(?<![A-Z0-9])(?:{alternatives})(?![A-Z0-9])"),
        wanted,
        re.compile(rb"(?<![A-Za-z0-9])(?:" + loose + rb")(?![A-Za-z0-9])", re.IGNORECASE),
    )


def _vr_of(element: DataElement | RawDataElement) -> str:
    if element.VR:
        return str(element.VR)
    if BaseTag(element.tag).is_private:
        return "UN"
    try:  # implicit VR: the dictionary's
        return str(dictionary_VR(element.tag))
    except KeyError:
        return "UN"


def _text_of(element: DataElement | RawDataElement, vr: str) -> str | None:
    """An element's value as text to search, or None for values that are not text.

    Raw (not yet decoded) values are searched as their bytes, read as Latin-1: the
    identifying values are mostly ASCII, and decoding every element through pydicom
    cost more than the rest of the check.
    """
    value = element.value
    if value is None:
        return None
    if vr in TEXT_VRS:
        if isinstance(value, bytes):
            return value.decode("latin-1", "replace")
        if isinstance(value, str | PersonName):
            return str(value)
        return "\\".join(str(v) for v in value)
    if vr in RAW_VRS and BaseTag(element.tag).is_private and isinstance(value, bytes):
        return value[:RAW_LIMIT].decode("latin-1", "replace")
    return None


def _where(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _may_hold(dataset: Dataset, wanted: Needles) -> bool:
    """Whether any wanted value may be in ``dataset``: one search of the undecoded bytes
    of its elements (raw sequences hold their items' bytes) and the text of those a
    script changed. A clean file, the usual case, costs this and no more; a hit is
    confirmed, and placed, by the walk."""
    if wanted.quick is None:
        return True
    blob: list[bytes] = []
    stack = [dataset]
    while stack:
        for element in stack.pop().values():
            value = element.value
            if isinstance(value, bytes):  # most elements: raw, as read
                if element.tag >> 16 != PIXEL_DATA_GROUP:
                    blob.append(value[:RAW_LIMIT])
            elif isinstance(value, str | PersonName):
                blob.append(str(value).encode("utf-8", "replace"))
            elif isinstance(value, Sequence):
                stack.extend(item for item in value if isinstance(item, Dataset))
            elif isinstance(value, MultiValue | list):
                blob.append("\\".join(str(v) for v in value).encode("utf-8", "replace"))
    return wanted.quick.search(b"\0".join(blob)) is not None


def find_left(dataset: Dataset, wanted: Needles) -> list[Leak]:
    """Where ``wanted`` values are still in ``dataset`` (after anonymization).

    Walks the data set with an explicit stack (no recursion, whatever the nesting),
    skips pixel data and UIDs, and reports each element at most once, as the kind of
    the first (longest) value found in it.
    """
    pattern = wanted.pattern
    if pattern is None or not _may_hold(dataset, wanted):
        return []
    leaks: list[Leak] = []
    stack: list[tuple[Dataset, tuple[str, ...]]] = [(dataset, ())]
    while stack:
        current, path = stack.pop()
        for element in current.values():  # raw elements stay raw: no decoding
            tag = BaseTag(element.tag)
            if tag.group == PIXEL_DATA_GROUP:
                continue
            vr = _vr_of(element)
            if vr == "SQ":
                name = f"({tag.group:04X},{tag.element:04X})"
                for number, item in enumerate(current[tag].value or []):
                    if isinstance(item, Dataset):
                        stack.append((item, (*path, f"{name}[{number}]")))
                continue
            text = _text_of(element, vr)
            if not text:
                continue
            found = pattern.search(_normal(text))
            if found is not None:
                name = f"({tag.group:04X},{tag.element:04X})"
                leaks.append(Leak(_where((*path, name)), wanted.kinds[found.group(0)]))
    return leaks
