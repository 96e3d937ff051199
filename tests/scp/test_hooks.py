"""scp/hooks.py: the one place xnatd reaches inside pynetdicom, checked before it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pynetdicom
import pynetdicom.acse as acse_module
import pynetdicom.association as association_module
import pynetdicom.dul as dul_module
import pytest
from helpers import base_settings, free_port
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

from xnatd.scp import hooks


def test_the_installed_pynetdicom_is_one_the_hooks_were_tested_with() -> None:
    """Fails when constraints.txt moves pynetdicom without moving hooks.TESTED (and
    re-reading every hook against the new version's source)."""
    assert hooks.version_problem() is None
    assert hooks.shape_problems() == []


@pytest.mark.parametrize("version", ["3.1.0", "2.1.1", "4.0.0.dev0"])
def test_an_untested_version_is_named_with_the_tested_range(version: str) -> None:
    problem = hooks.version_problem(version)
    assert problem is not None
    assert f"pynetdicom {version} is installed" in problem and ">= 3.0.4, < 3.1" in problem


def test_a_hooked_internal_that_changed_shape_is_reported(monkeypatch) -> None:
    """Each hook's private detail is checked: a signature change, a renamed reactor
    idle, a readiness check that is no longer a property."""

    def read_pdu_data(self, extra) -> None:  # a new argument: our replacement would break
        pass

    monkeypatch.setattr(DULServiceProvider, "_read_pdu_data", read_pdu_data)
    monkeypatch.setattr(AssociationSocket, "ready", lambda self: True)
    monkeypatch.delattr(_config, "LOG_REQUEST_IDENTIFIERS")
    problems = hooks.shape_problems()
    assert any("_read_pdu_data" in p for p in problems)
    assert any("AssociationSocket.ready" in p for p in problems)
    assert any("LOG_REQUEST_IDENTIFIERS" in p for p in problems)
    with pytest.raises(hooks.UnsupportedPynetdicom, match="does not fit xnatd's hooks"):
        hooks.install()
    assert not hooks.installed()  # nothing half-installed


def test_install_changes_only_what_it_lists_and_uninstall_puts_it_back() -> None:
    watched = [
        (DULServiceProvider, "send_pdu"),
        (DULServiceProvider, "run_reactor"),
        (DULServiceProvider, "_read_pdu_data"),
        (dul_module, "time"),
        (association_module, "time"),
        (Association, "__init__"),
        (acse_module, "negotiate_unrestricted"),
        (_config, "UNRESTRICTED_STORAGE_SERVICE"),
        (_config, "LOG_REQUEST_IDENTIFIERS"),
    ]
    before = {(id(owner), name): getattr(owner, name) for owner, name in watched}
    ready = AssociationSocket.__dict__["ready"]
    assert not hooks.installed()
    hooks.install()
    try:
        hooks.install()  # a second call changes nothing more
        changed = [
            name for owner, name in watched if getattr(owner, name) is not before[(id(owner), name)]
        ]
        # _config values are plain booleans: compare them by value
        assert set(changed) >= {"send_pdu", "run_reactor", "_read_pdu_data", "time", "__init__"}
        assert (
            acse_module.negotiate_unrestricted
            is not before[(id(acse_module), "negotiate_unrestricted")]
        )
        assert _config.UNRESTRICTED_STORAGE_SERVICE is True
        assert _config.LOG_REQUEST_IDENTIFIERS is False
        assert AssociationSocket.__dict__["ready"] is not ready
    finally:
        hooks.uninstall()
    for owner, name in watched:
        assert (
            getattr(owner, name) is before[(id(owner), name)]
            or getattr(owner, name) == before[(id(owner), name)]
        ), name
    assert AssociationSocket.__dict__["ready"] is ready


def test_importing_xnatd_changes_nothing_in_pynetdicom() -> None:
    """The hooks are installed by a call, never as a side effect of an import."""
    probe = (
        "import pynetdicom.dul as d, pynetdicom.association as a, pynetdicom.acse as c;"
        "before = (d.DULServiceProvider.run_reactor, d.time, a.Association.__init__,"
        " a.time, c.negotiate_unrestricted);"
        "import xnatd.daemon, xnatd.cli, xnatd.sender, xnatd.scp.hooks;"
        "after = (d.DULServiceProvider.run_reactor, d.time, a.Association.__init__,"
        " a.time, c.negotiate_unrestricted);"
        "print(all(x is y for x, y in zip(before, after)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True", result.stderr


def test_the_daemon_refuses_an_untested_pynetdicom_in_one_line(tmp_path: Path) -> None:
    """``xnatd run`` with a pynetdicom outside the tested range stops at start with a
    message naming both versions, and no traceback."""
    import yaml

    config = tmp_path / "xnatd.yaml"
    config.write_text(yaml.safe_dump(base_settings(free_port(), free_port())))
    program = (
        "import sys, pynetdicom; pynetdicom.__version__ = '3.1.0';"
        "from xnatd.cli import main; sys.exit(main(['run', '-c', sys.argv[1]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("xnatd:")]
    assert errors and "pynetdicom 3.1.0 is installed" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert pynetdicom.__version__ != "3.1.0"  # the real one, in this process


def test_an_install_without_sources_is_judged_by_its_signatures(monkeypatch) -> None:
    """pynetdicom installed as bytecode only: the source markers cannot be read, so the
    daemon must not refuse to start for that; a changed signature is still caught."""

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(hooks.inspect, "getsource", no_source)
    assert hooks.shape_problems() == []

    def read_pdu_data(self, extra) -> None:
        pass

    monkeypatch.setattr(DULServiceProvider, "_read_pdu_data", read_pdu_data)
    assert any("_read_pdu_data" in p for p in hooks.shape_problems())
