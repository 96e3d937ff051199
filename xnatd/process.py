"""Process-wide settings of the libraries xnatd uses: set once, at start, here.

Every entry point calls :func:`configure` before it does anything else (the command
line's ``main``, and the test suite's conftest for what it runs in process); nothing is
changed as a side effect of importing a module. What xnatd changes inside pynetdicom is
installed separately, by the daemon and ``xnatd send`` (``scp/hooks.py``), since only
they run associations.
"""

from __future__ import annotations

import ctypes
import os
import signal

import pydicom.config
import structlog
from prometheus_client import disable_created_metrics

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def configure() -> None:
    """Set the process-wide library settings (idempotent)."""
    # A bad value from a scanner must not fail the file: keep it, don't warn per element.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    # A "_created" twin of every counter only doubles the series Grafana has to load.
    disable_created_metrics()


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a receiving worker, a pixel
    check worker): a daemon killed with kill -9 goes away whole, as a single process
    would (a SIGTERM to the main process still lets every worker drain first)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        structlog.get_logger(__name__).warning("parent_death_signal_unavailable")
    if os.getppid() == 1:  # the parent is already gone
        os.kill(os.getpid(), signal.SIGKILL)
