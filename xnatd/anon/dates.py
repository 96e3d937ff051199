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

    A value of reduced precision (``2023``, ``202305``, ``2023051913``) stands for a
    span of time: its middle is shifted and the result written at the same precision,
    which is what DicomEdit gives (``2023`` less 300 days is ``2022``, ``2022`` less 3
    days stays ``2022``, ``2023051913`` less 13 h 13 s is ``2023051900``).

    Raises:
        ValueError: not a date/date-time, or an unknown unit.
    """
    if units.lower() not in _UNITS:
        raise ValueError(f"unknown increment unit {units!r} (seconds, minutes, hours, days)")
    text = value.strip()
    match = _DT.match(text)
    if not match:
        raise ValueError(f"Failed to parse DICOM time string {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        start = dt.datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or ".0")[1:].ljust(6, "0")),
        )
    except ValueError:
        raise ValueError(f"Failed to parse DICOM time string {value!r}") from None
    present = [p is not None for p in (month, day, hour, minute, second)]
    precision = sum(present)
    moment = start + _span(start, precision, bool(fraction)) / 2
    moment += dt.timedelta(seconds=amount * _UNITS[units.lower()])
    parts = [f"{moment.year:04d}"]
    for number in (moment.month, moment.day, moment.hour, moment.minute, moment.second)[:precision]:
        parts.append(f"{number:02d}")
    if fraction:
        parts.append("." + f"{moment.microsecond:06d}"[: len(fraction) - 1])
    return "".join(parts) + (zone or "")


def _span(start: dt.datetime, precision: int, exact: bool) -> dt.timedelta:
    """How long the value at this precision stands for (0 when fractions are given)."""
    if exact:
        return dt.timedelta(0)
    if precision == 0:
        return start.replace(year=start.year + 1) - start
    if precision == 1:
        following = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return following - start
    return dt.timedelta(seconds=(86400, 3600, 60, 1)[precision - 2])


def shift_date(value: str, days: int) -> str:
    """Shift a DA ``YYYYMMDD`` by whole days."""
    return shift_datetime(value, days, "days")
