"""systemd Type=notify: READY, WATCHDOG and STOPPING reach $NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import base_settings, free_port, wait_for


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(0.2)
    config = tmp_path / "xnatd.yaml"
    config.write_text(yaml.safe_dump(base_settings(free_port(), free_port())))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "xnatd", "run", "-c", str(config)],
        env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    messages: list[str] = []

    def received(text: str) -> bool:
        with contextlib.suppress(TimeoutError):
            messages.append(listener.recv(4096).decode())
        return any(text in message for message in messages)

    try:
        wait_for(lambda: received("READY=1"), timeout=20)
        wait_for(lambda: received("WATCHDOG=1"), timeout=5)
        daemon.send_signal(signal.SIGTERM)
        wait_for(lambda: received("STOPPING=1"), timeout=20)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        listener.close()
