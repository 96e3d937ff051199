"""The Basic Application Level Confidentiality Profile of DICOM PS3.15 Annex E, with its
options (SPEC 10.1), applied to a data set in place.

The actions come from Table E.1-1 (``ps315_table``), at every nesting level. Choices
where the standard leaves one to the implementation:

- ``X/Z`` and ``X/Z/D`` give Z (the element stays, empty: Type 2 attributes remain
  conformant); ``X/D`` and ``Z/D`` give D; ``X/Z/U*`` keeps the sequence and replaces the
  UIDs inside it.
- D (dummy) is ``ANONYMOUS`` for text, 19000101 / 000000 for dates and times, 0 for
  numbers; a sequence gets one empty item. Z on a sequence empties it.
- U replaces a UID by ``2.25.<HMAC-SHA256 of the UID under the site secret, 128 bits>``:
  the same original gives the same new UID in every file, session and re-send.
- C (clean): dates under retain-longitudinal-modified-dates move back by whole days, an
  offset derived from the keyed hash of the Patient ID (times keep their value, so a file
  stays consistent); descriptors (clean-descriptors, and retain-patient-characteristics'
  C rows) keep their text with the sender's identifying values (names, IDs, ...) cut out;
  structured content (clean-structured-content) keeps the sequence, whose items are
  processed like the rest, with their Text Values (0040,A160) cleaned as descriptors.
- Private elements are removed; retain-safe-private keeps those in ``SAFE_PRIVATE``.
- clean-graphics and clean-pixel-data are accepted but not performed by the profile:
  graphics (overlays, curves, graphic annotations) stay removed as the Basic Profile
  says, and pixels are left to the pixel check (SPEC 10.2). Neither option's code is
  written, since neither cleaning was done.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from xnatd.anon.ps315_table import ACTIONS, MASKED
from xnatd.phi.headers import needles

OPTIONS = (
    "retain-safe-private",
    "retain-uids",
    "retain-device-identity",
    "retain-institution-identity",
    "retain-patient-characteristics",
    "retain-longitudinal-full-dates",
    "retain-longitudinal-modified-dates",
    "clean-descriptors",
    "clean-structured-content",
    "clean-graphics",
    "clean-pixel-data",
)
PROFILES = ("basic",)
# De-identification Method Code Sequence (CID 7050), coding scheme DCM.
BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES = {
    "clean-structured-content": ("113104", "Clean Structured Content Option"),
    "clean-descriptors": ("113105", "Clean Descriptors Option"),
    "retain-longitudinal-full-dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain-longitudinal-modified-dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain-patient-characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain-device-identity": ("113109", "Retain Device Identity Option"),
    "retain-uids": ("113110", "Retain UIDs Option"),
    "retain-safe-private": ("113111", "Retain Safe Private Option"),
    "retain-institution-identity": ("113112", "Retain Institution Identity Option"),
}
NOT_PERFORMED = frozenset({"clean-graphics", "clean-pixel-data"})
# Private elements kept by retain-safe-private: (private creator, group, element byte).
# Acquisition parameters that identify nobody (PS3.15 E.3.10 lists such attributes).
SAFE_PRIVATE = frozenset(
    {
        ("SIEMENS MR HEADER", 0x0019, 0x0C),  # B value
        ("SIEMENS MR HEADER", 0x0019, 0x0D),  # diffusion directionality
        ("SIEMENS MR HEADER", 0x0019, 0x0E),  # diffusion gradient direction
        ("SIEMENS MR HEADER", 0x0019, 0x27),  # B matrix
        ("GEMS_PARM_01", 0x0043, 0x39),  # slop_int_6..9 (b value)
        ("PHILIPS IMAGING DD 001", 0x2001, 0x03),  # diffusion B-factor
        ("PHILIPS IMAGING DD 001", 0x2001, 0x04),  # diffusion direction
    }
)
TEXT_VALUE = 0x0040A160
DUMMY_TEXT = "ANONYMOUS"
DUMMIES: dict[str, object] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
    "OB": b"\0\0",
    "OW": b"\0\0",
    "UN": b"\0\0",
}
_EMPTY_BYTES = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})


def _resolve(basic: str, cells: dict[str, str], options: frozenset[str]) -> str:
    """The action for an attribute under the chosen options: retaining wins over cleaning,
    cleaning over the Basic Profile (as the standard's option columns override it)."""
    chosen = [
        (option, action)
        for option, action in cells.items()
        if option in options and option not in NOT_PERFORMED
    ]
    for wanted in ("K", "C", "X"):
        for option, action in chosen:
            if action == wanted:
                if action == "C":  # how to clean depends on the option that asks for it
                    if option == "retain-longitudinal-modified-dates":
                        return "C-dates"
                    if option == "clean-structured-content":
                        return "C-structure"
                    return "C-text"
                return action
    return {"X/Z": "Z", "X/Z/D": "Z", "X/D": "D", "Z/D": "D", "X/Z/U*": "K"}.get(basic, basic)


def uid_for(secret: bytes, uid: str) -> str:
    """The replacement of ``uid``: a keyed hash, 128 bits, under the 2.25 root."""
    digest = hmac.new(secret, uid.strip("\0 ").encode("ascii", "replace"), hashlib.sha256)
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


def day_offset(secret: bytes, patient_id: str) -> int:
    """Days a subject's dates move back: 1 to 3650, stable for a Patient ID and secret."""
    digest = hmac.new(secret, b"date-offset\0" + patient_id.encode("utf-8"), hashlib.sha256)
    return int.from_bytes(digest.digest()[:4], "big") % 3650 + 1


@dataclass(frozen=True)
class Profile:
    """The basic profile with ``options``; ``secret`` keys the UID and date hashes."""

    options: frozenset[str]
    secret: bytes = field(repr=False)
    actions: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = self.options - set(OPTIONS)
        if unknown:
            raise ValueError(f"unknown profile options: {', '.join(sorted(unknown))}")
        table = {
            tag: _resolve(basic, cells, self.options) for tag, (basic, cells) in ACTIONS.items()
        }
        object.__setattr__(self, "actions", table)

    def apply(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` in place and record how."""
        run = _Run(self, dataset)
        run.walk(dataset)
        self._record(dataset)

    def _record(self, dataset: Dataset) -> None:
        codes = [BASIC_CODE] + [
            OPTION_CODES[o] for o in OPTIONS if o in self.options and o in OPTION_CODES
        ]
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = [meaning[:64] for _, meaning in codes]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        dataset.DeidentificationMethodCodeSequence = Sequence(items)
        if "retain-longitudinal-full-dates" in self.options:
            dataset.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif "retain-longitudinal-modified-dates" in self.options:
            dataset.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            dataset.LongitudinalTemporalInformationModified = "REMOVED"


class _Run:
    """One data set's pass: the subject's date offset and the values to clean out of text."""

    def __init__(self, profile: Profile, dataset: Dataset) -> None:
        self.profile = profile
        self.secret = profile.secret
        self.offset = day_offset(self.secret, str(dataset.get("PatientID", "") or ""))
        self._cleaner: re.Pattern[str] | bool | None = False  # computed when first needed
        self.top = dataset

    def cleaner(self) -> re.Pattern[str] | None:
        if self._cleaner is False:
            wanted = needles(self.top)
            words = sorted(wanted.kinds, key=len, reverse=True)
            self._cleaner = (
                re.compile(
                    "|".join(r"[\s^=]+".join(map(re.escape, w.split())) for w in words),
                    re.IGNORECASE,
                )
                if words
                else None
            )
        return self._cleaner  # type: ignore[return-value]

    def action(self, tag: int) -> str | None:
        found = self.profile.actions.get(tag)
        if found is None and tag >> 24 in (0x50, 0x60):
            for mask, value, basic, cells in MASKED:
                if tag & mask == value:
                    return _resolve(basic, cells, self.profile.options)
        return found

    def walk(self, dataset: Dataset) -> None:
        private_kept = "retain-safe-private" in self.profile.options
        for key in list(dataset.keys()):
            tag = int(key)
            if tag >> 16 & 1:  # private
                if not (private_kept and self._safe_private(dataset, tag)):
                    del dataset[tag]
                continue
            action = self.action(tag)
            if action is None or action == "K":
                if self._is_sequence(dataset, tag):
                    self._items(dataset, tag)
                continue
            self._apply(dataset, tag, action)

    def _is_sequence(self, dataset: Dataset, tag: int) -> bool:
        raw = dataset.get_item(tag)
        if raw is not None and raw.VR:
            return str(raw.VR) == "SQ"
        try:
            return dictionary_VR(tag) == "SQ"
        except KeyError:
            return False

    def _items(self, dataset: Dataset, tag: int) -> None:
        for item in dataset[tag].value or []:
            if isinstance(item, Dataset):
                self.walk(item)

    def _safe_private(self, dataset: Dataset, tag: int) -> bool:
        group, element = tag >> 16, tag & 0xFFFF
        if element < 0x0010:  # group length
            return False
        if element <= 0x00FF:  # a private creator: kept if it owns a safe element
            creator = str(dataset[tag].value or "").strip().upper()
            return any(c == creator and g == group for c, g, _ in SAFE_PRIVATE)
        creator_tag = (group << 16) | (element >> 8)
        if creator_tag not in dataset:
            return False
        creator = str(dataset[creator_tag].value or "").strip().upper()
        return (creator, group, element & 0xFF) in SAFE_PRIVATE

    def _apply(self, dataset: Dataset, tag: int, action: str) -> None:
        if action == "X":
            del dataset[tag]
            return
        if action in ("Z", "D") and self._replaced_undecoded(dataset, tag, action):
            return
        element = dataset[tag]
        vr = str(element.VR)
        if vr == "SQ":
            if action == "Z":
                element.value = Sequence([])
            elif action == "D":
                element.value = Sequence([Dataset()])
            else:  # C or U: the items are processed like the rest
                self._items(dataset, tag)
                if action == "C-structure":
                    self._clean_structure(dataset[tag].value)
            return
        if action == "Z":
            element.value = b"" if vr in _EMPTY_BYTES else None
        elif action == "D":
            element.value = DUMMIES.get(vr, DUMMY_TEXT)
        elif action == "U":
            element.value = self._map(element.value, lambda v: uid_for(self.secret, v))
        elif action == "C-dates":
            if vr in ("DA", "DT"):
                element.value = self._map(element.value, self._shift)
        else:  # C-text
            element.value = self._map(element.value, self._clean)

    @staticmethod
    def _replaced_undecoded(dataset: Dataset, tag: int, action: str) -> bool:
        """Z or D on an element still as read (explicit VR, which decoding keeps unless
        UN): its value goes whatever it was, so it is replaced without being decoded."""
        raw = dataset.get_item(tag)
        if not raw.is_raw or not raw.VR or raw.VR in ("UN", "SQ"):
            return False
        vr = str(raw.VR)
        value: object
        if action == "Z":
            value = b"" if vr in _EMPTY_BYTES else None
        else:
            value = DUMMIES.get(vr, DUMMY_TEXT)
        dataset[tag] = DataElement(tag, vr, value)
        return True

    @staticmethod
    def _map(value: object, change: Callable[[str], str]) -> object:
        """``change`` applied to each value of a single or multiple value."""
        if value is None or value == "":
            return value
        if isinstance(value, MultiValue | list):
            return [change(str(v)) for v in value]
        return change(str(value))

    def _shift(self, value: str) -> str:
        """A DA or DT value moved back by the subject's offset; a partial date is kept."""
        if len(value) < 8 or not value[:8].isdigit():
            return value
        try:
            day = datetime.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            return value
        return (day - datetime.timedelta(days=self.offset)).strftime("%Y%m%d") + value[8:]

    def _clean(self, value: str) -> str:
        pattern = self.cleaner()
        if pattern is None:
            return value
        return " ".join(pattern.sub(" ", value).split())

    def _clean_structure(self, items: Sequence) -> None:
        stack = [item for item in items if isinstance(item, Dataset)]
        while stack:
            item = stack.pop()
            if TEXT_VALUE in item:
                item[TEXT_VALUE].value = self._clean(str(item[TEXT_VALUE].value or ""))
            for element in item:
                if element.VR == "SQ":
                    stack.extend(i for i in element.value or [] if isinstance(i, Dataset))
