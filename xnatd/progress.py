"""Progress for long commands: a bar on a terminal, plain lines otherwise (to stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Files and bytes done of a known total, shown on ``stream`` (stderr)."""

    def __init__(
        self,
        label: str,
        total_files: int,
        total_bytes: int,
        stream: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.label = label
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self.started = time.monotonic()
        self._last_line = -1

    def advance(self, size: int) -> None:
        """Count one file of ``size`` bytes done; redraw the bar, or write a line at each
        tenth.
        """
        self.files += 1
        self.bytes += size
        if self.quiet:
            return
        if self.tty:
            done = self.files / max(self.total_files, 1)
            bar = "#" * int(done * 30)
            self.stream.write(
                f"\r{self.label} [{bar:<30}] {self.files}/{self.total_files} files, "
                f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB"
            )
            self.stream.flush()
        else:
            tenth = int(10 * self.files / max(self.total_files, 1))
            if tenth != self._last_line:
                self._last_line = tenth
                self.stream.write(
                    f"{self.label}: {self.files}/{self.total_files} files, "
                    f"{self.bytes / 1e6:.1f} MB\n"
                )

    def finish(self) -> None:
        """End the bar's line (on a terminal)."""
        if self.tty and not self.quiet:
            self.stream.write("\n")
