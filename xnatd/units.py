"""Durations and sizes as written in the configuration (``500ms``, ``5m``, ``2GiB``),
and moments as printed (ISO 8601, UTC)."""

from __future__ import annotations

import re
import time

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B|[kKMGTP]B|B)?\s*$")
_SIZE_BYTES = {
    None: 1,
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}


def parse_duration(value: object) -> float:
    """Return seconds for ``30s``, ``5m``, ``500ms``, ``1h`` or a bare number of seconds.

    Raises:
        ValueError: the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 5m, 500ms)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 5m, 500ms)")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def parse_size(value: object) -> int:
    """Return bytes for ``512MiB``, ``2GiB``, ``10GB`` or a bare number of bytes.

    Raises:
        ValueError: the value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size (write e.g. 512MiB, 2GiB)")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size (write e.g. 512MiB, 2GiB)")
    return int(float(match.group(1)) * _SIZE_BYTES[match.group(2)])


def iso(epoch: float) -> str:
    """A moment as ISO 8601 in UTC, to the second: ``2026-12-03T13:20:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
