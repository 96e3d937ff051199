"""Process-wide settings of the libraries xnatd uses: set once, at start, here.

Every entry point calls :func:`configure` before it does anything else (the command
line's ``main``, and the test suite's conftest for what it runs in process); nothing is
changed as a side effect of importing a module. What xnatd changes inside pynetdicom is
installed separately, by the daemon and ``xnatd send`` (``scp/hooks.py``), since only
they run associations.
"""

from __future__ import annotations

import pydicom.config
from prometheus_client import disable_created_metrics


def configure() -> None:
    """Set the process-wide library settings (idempotent)."""
    # A bad value from a scanner must not fail the file: keep it, don't warn per element.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    # A "_created" twin of every counter only doubles the series Grafana has to load.
    disable_created_metrics()
