"""The allocator settings of every xnatd process (``xnatd/memory.py``): a batch of
received files freed together is reused for the next batch, not handed back to the
system and faulted in again page by page, until the minute's ``give_back``."""

from __future__ import annotations

import subprocess
import sys

import pytest

BATCHES = """
import resource, sys, threading
from xnatd import memory

if sys.argv[1] == "configured":
    assert memory.configure_allocator()
faults = []

def receive():  # as an association's thread does: 16 files held, then freed together
    for batch in range(40):
        if batch == 10:
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt)
        held = [bytearray(b"x" * 262_144) for _ in range(16)]
        del held
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt)

thread = threading.Thread(target=receive)
thread.start()
thread.join()
print((faults[1] - faults[0]) / (30 * 16))
"""


def faults_per_file(how: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", BATCHES, how], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_batch_of_files_is_reused_not_faulted_in_again() -> None:
    assert faults_per_file("configured") < 1
    # What the settings are for: glibc's defaults fault most of each file in again.
    assert faults_per_file("default") > 20
