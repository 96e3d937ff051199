"""Date and date-time shifting that keeps the input's precision and time zone suffix."""

from __future__ import annotations

import datetime as dt
import re

_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_UNITS = {
    "second": 1,
    "seconds": 1,
    "minute": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
    "week": 604800,
    "weeks": 604800,
}


def shift_datetime(value: str, amount: int, units: str = "seconds") -> str:
    """Shift a DICOM DA or DT value; e.g. ``20200101120000-0730`` + 10 s keeps ``-0730``.

    Raises:
        ValueError: not a date/date-time, or an unknown unit.
    """
    if units.lower() not in _UNITS:
        raise ValueError(f"unknown increment unit {units!r} (seconds, minutes, hours, days)")
    text = value.strip()
    match = _DT.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a DICOM date or date-time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or ".0")[1:].ljust(6, "0"))
    moment = dt.datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
    ) + dt.timedelta(seconds=amount * _UNITS[units.lower()])
    parts = [f"{moment.year:04d}"]
    for present, number in (
        (month, moment.month),
        (day, moment.day),
        (hour, moment.hour),
        (minute, moment.minute),
        (second, moment.second),
    ):
        if present is None:
            break
        parts.append(f"{number:02d}")
    if fraction:
        parts.append("." + f"{moment.microsecond:06d}"[: len(fraction) - 1])
    return "".join(parts) + (zone or "")


def shift_date(value: str, days: int) -> str:
    """Shift a DA ``YYYYMMDD`` by whole days."""
    return shift_datetime(value, days, "days")
