"""A site admin's first hour: users and tokens, environment mistakes as one line, workers
started from anywhere, readable logs and typo suggestions (issue 17)."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from dicomgen import StudySpec, write_study
from helpers import Xnatd, base_settings, free_port, storescu_send, wait_for


def xnatd_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """``python -m xnatd ARGS`` as a user would run it; the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "xnatd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_config(folder: Path, settings: dict) -> Path:
    path = folder / "xnatd.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def get(url: str, user: str | None = None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if user is not None:
        basic = b64encode(f"{user}:{token}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class TestUsers:
    def test_added_user_token_works_at_once_and_a_wrong_one_is_refused(self, make_xnatd) -> None:
        """`xnatd users add` writes the users file; the running daemon takes the token
        without a restart, and a wrong token gets a 401 that says it was not accepted."""
        xnatd = make_xnatd(hook=lambda s: s.update(users="users.yaml"))
        added = xnatd.cli("users", "add", "alice", "--project", "DEMO=owner")
        token = added.stdout.strip()
        assert len(token) >= 40 and "\n" not in token
        assert "shown only this once" in added.stderr
        users_file = xnatd.config_path.parent / "users.yaml"
        assert token not in users_file.read_text()  # only its digest is kept
        url = f"http://127.0.0.1:{xnatd.http_port}/data/prearchive/projects/DEMO"
        assert get(url, "alice", token)[0] == 200  # at once: no reload, no wait
        status, body = get(url, "alice", "not-the-token")
        assert status == 401 and "not accepted" in body["detail"]
        status, body = get(url)
        assert status == 401 and "required" in body["detail"]

    def test_token_replaces_and_remove_revokes(self, make_xnatd) -> None:
        """A new token stops the old one; a removed user is refused."""
        xnatd = make_xnatd(hook=lambda s: s.update(users="users.yaml"))
        old = xnatd.cli("users", "add", "bob", "--admin").stdout.strip()
        new = xnatd.cli("users", "token", "bob").stdout.strip()
        assert new != old
        url = f"http://127.0.0.1:{xnatd.http_port}/data/prearchive/projects/DEMO"
        assert get(url, "bob", new)[0] == 200
        assert get(url, "bob", old)[0] == 401
        listed = json.loads(xnatd.cli("users", "list", "--json").stdout)
        assert listed == [{"name": "bob", "admin": True, "projects": {}}]
        xnatd.cli("users", "remove", "bob")
        assert get(url, "bob", new)[0] == 401  # revoked for the very next request

    def test_mistakes_are_one_line(self, tmp_path: Path) -> None:
        """An unknown project or role, a taken name, inline users: one line each."""
        settings = base_settings(free_port(), free_port())
        settings["users"] = "users.yaml"
        config = write_config(tmp_path, settings)
        assert "NOPE: not a project" in one_line_error(
            xnatd_cli("users", "add", "a", "--project", "NOPE=owner", "-c", str(config))
        )
        assert "PROJECT=owner|member|collaborator" in one_line_error(
            xnatd_cli("users", "add", "a", "--project", "DEMO=king", "-c", str(config))
        )
        assert xnatd_cli("users", "add", "a", "-c", str(config)).returncode == 0
        assert "exists already" in one_line_error(xnatd_cli("users", "add", "a", "-c", str(config)))
        assert "no user zed" in one_line_error(
            xnatd_cli("users", "remove", "zed", "-c", str(config))
        )
        settings["users"] = {}
        inline = write_config(tmp_path, settings)
        assert "inline" in one_line_error(xnatd_cli("users", "add", "a", "-c", str(inline)))


class TestEnvironmentMistakes:
    def test_data_dir_that_cannot_be_written(self, tmp_path: Path) -> None:
        """check-config and run both name the data directory; nothing is created."""
        (tmp_path / "afile").write_text("not a folder")
        settings = base_settings(free_port(), free_port(), data_dir="afile/data")
        config = write_config(tmp_path, settings)
        line = one_line_error(xnatd_cli("check-config", "-c", str(config)))
        assert "site.data_dir" in line and "afile" in line
        line = one_line_error(xnatd_cli("run", "-c", str(config)))
        assert "data directory" in line and "afile" in line

    @pytest.mark.parametrize("which", ["dicom", "http"])
    def test_port_in_use_stops_the_start(self, tmp_path: Path, which: str) -> None:
        """A DICOM or HTTP port already taken: one line and a non-zero exit."""
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        try:
            dicom, http = (busy, free_port()) if which == "dicom" else (free_port(), busy)
            config = write_config(tmp_path, base_settings(dicom, http))
            result = xnatd_cli("run", "-c", str(config))
            assert result.returncode == 1
            assert "Traceback" not in result.stderr
            human = [line for line in result.stderr.splitlines() if line.startswith("xnatd: ")]
            assert len(human) == 1 and f"127.0.0.1:{busy}" in human[0], result.stderr
        finally:
            blocker.close()

    def test_missing_config_is_one_line(self, tmp_path: Path) -> None:
        """A named config that does not exist, and no config at the default places."""
        line = one_line_error(xnatd_cli("check-config", "-c", str(tmp_path / "nope.yaml")))
        assert "nope.yaml" in line
        env = {k: v for k, v in os.environ.items() if k != "XNATD_CONFIG"}
        if Path("/etc/xnatd/xnatd.yaml").exists():
            pytest.skip("this machine has /etc/xnatd/xnatd.yaml")
        line = one_line_error(xnatd_cli("prearchive", "list", cwd=tmp_path, env=env))
        assert "-c CONFIG" in line and str(tmp_path) in line

    def test_read_only_commands_create_nothing_and_say_what_they_read(self, tmp_path: Path) -> None:
        """A listing of a data directory that does not exist yet leaves it so, and names
        the configuration and data directory it read."""
        config = write_config(tmp_path, base_settings(free_port(), free_port()))
        for args in (["prearchive", "list"], ["sessions", "list"], ["audit"]):
            result = xnatd_cli(*args, "-c", str(config))
            assert result.returncode == 0, result.stderr
            assert str(config) in result.stdout and str(tmp_path / "data") in result.stdout
        assert xnatd_cli("prearchive", "list", "--json", "-c", str(config)).stdout.strip() == "[]"
        assert not (tmp_path / "data").exists()

    def test_unknown_project_is_an_error_not_an_empty_list(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, base_settings(free_port(), free_port()))
        for group in ("prearchive", "sessions"):
            line = one_line_error(xnatd_cli(group, "list", "--project", "NOPE", "-c", str(config)))
            assert "NOPE" in line and "DEMO" in line
        ok = xnatd_cli("prearchive", "list", "--project", "Unassigned", "-c", str(config))
        assert ok.returncode == 0, ok.stderr

    def test_typo_in_a_key_suggests_the_key_meant(self, tmp_path: Path) -> None:
        settings = base_settings(free_port(), free_port())
        settings["site"]["idle_timout"] = "5s"
        line = one_line_error(
            xnatd_cli("check-config", "-c", str(write_config(tmp_path, settings)))
        )
        assert "site.idle_timout: unknown key; did you mean session_idle_timeout?" in line


def test_workers_start_whatever_the_working_directory(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    """Started where a folder named xnatd sits (a checkout's parent), the workers still
    run the installed program and serve associations."""
    xnatd: Xnatd = make_xnatd(start=False, hook=lambda s: s.update(workers=2))
    (xnatd.workdir / "xnatd").mkdir()  # shadows the package for `python -m xnatd`
    installed = Path(sys.executable).with_name("xnatd")  # the console script pip wrote
    xnatd.start(
        program=[str(installed)] if installed.exists() else [sys.executable, "-P", "-m", "xnatd"]
    )
    wait_for(lambda: xnatd.events("worker_ready"), timeout=30)
    paths = write_study(StudySpec("cwd", study_description="DEMO"), dcm_dir)
    for _ in range(3):  # the main process hands some of them to the worker
        assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    assert not xnatd.events("worker_died"), xnatd.log()


class TestLogFormat:
    SNIPPET = (
        "import structlog; from xnatd import logs; logs.configure('auto', 'info');"
        " structlog.get_logger('t').info('hello_event', answer=42)"
    )

    def test_auto_is_json_when_not_a_terminal(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", self.SNIPPET], capture_output=True, text=True, timeout=30
        )
        event = json.loads(result.stderr.strip().splitlines()[-1])
        assert event["event"] == "hello_event" and event["answer"] == 42

    def test_auto_is_console_lines_on_a_terminal(self) -> None:
        leader, follower = pty.openpty()
        process = subprocess.Popen([sys.executable, "-c", self.SNIPPET], stderr=follower)
        os.close(follower)
        output = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=10)
        os.close(leader)
        text = output.decode(errors="replace")
        assert "hello_event" in text and "answer" in text
        assert not text.strip().startswith("{"), text


class TestCheckConfigWritesNothing:
    def test_a_missing_uid_key_is_reported_not_created(self, tmp_path: Path) -> None:
        """check-config with a profile configured and no key yet: ok, it says run creates
        the key, and nothing at all is written; loading for run then creates it."""
        settings = base_settings(free_port(), free_port(), anonymization=[{"profile": "basic"}])
        config = write_config(tmp_path, settings)
        before = sorted(tmp_path.rglob("*"))
        result = xnatd_cli("check-config", "-c", str(config))
        assert result.returncode == 0, result.stderr
        key = tmp_path / "uid.key"
        assert f"site.uid_secret: {key} does not exist yet; run creates it" in result.stdout
        assert sorted(tmp_path.rglob("*")) == before
        from xnatd import config as config_module

        loaded = config_module.load(config)  # as run loads it
        assert loaded.site.uid_secret == key and key.stat().st_mode & 0o777 == 0o600
        assert not loaded.site.uid_secret_missing
        again = xnatd_cli("check-config", "-c", str(config))
        assert again.returncode == 0 and "uid_secret" not in again.stdout

    def test_a_key_that_could_not_be_created_fails_the_check(self, tmp_path: Path) -> None:
        settings = base_settings(
            free_port(),
            free_port(),
            anonymization={"profile": "basic"},
            uid_secret="missing/folder/uid.key",
        )
        line = one_line_error(
            xnatd_cli("check-config", "-c", str(write_config(tmp_path, settings)))
        )
        assert "site.uid_secret" in line and "missing" in line
        assert not (tmp_path / "missing").exists()
