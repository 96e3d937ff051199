"""Steps run after each archive (SPEC 7.3): commands, and the built-in protocol check."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from xnatd.config import AutorunStep, CommandStep, ProtocolStep
from xnatd.store.index.records import ArchivedSession, ScanRow

OUTPUT_LIMIT = 2000  # characters of a command's output kept in the result


def session_environment(session: ArchivedSession, folder: Path) -> dict[str, str]:
    """The ``XNATD_*`` environment variables an autorun command gets: the session's
    IDs, labels, folder, Study UID and data type.
    """
    return {
        "XNATD_SESSION_ID": session.id,
        "XNATD_SESSION_LABEL": session.label,
        "XNATD_SESSION_DIR": str(folder),
        "XNATD_PROJECT": session.project,
        "XNATD_SUBJECT_ID": session.subject_id,
        "XNATD_SUBJECT": session.subject,
        "XNATD_STUDY_UID": session.study_uid,
        "XNATD_XSI_TYPE": session.xsi_type,
    }


def run_command(step: CommandStep, session: ArchivedSession, folder: Path) -> dict[str, Any]:
    """Run one command step in the session's folder; its result (passed, failed,
    timeout or error) with exit code, the end of its output and its duration.
    """
    started = time.monotonic()
    result: dict[str, Any] = {"step": "run", "command": list(step.run)}
    try:
        done = subprocess.run(
            list(step.run),
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=step.timeout,
            env={**os.environ, **session_environment(session, folder)},
        )
        result.update(
            result="passed" if done.returncode == 0 else "failed",
            exit_code=done.returncode,
            output=(done.stdout + done.stderr)[-OUTPUT_LIMIT:],
        )
    except subprocess.TimeoutExpired:
        result.update(result="timeout", reason=f"still running after {step.timeout:g} s")
    except OSError as exc:
        result.update(result="error", reason=str(exc))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def check_protocol(step: ProtocolStep, scans: list[ScanRow]) -> dict[str, Any]:
    """Count scans whose type or series description contains each rule's type."""
    checks = []
    for rule in step.rules:
        wanted = rule.type.casefold()
        count = sum(
            wanted in (scan.type or "").casefold()
            or wanted in (scan.series_description or "").casefold()
            for scan in scans
        )
        ok = count >= rule.min and (rule.max is None or count <= rule.max)
        checks.append(
            {"type": rule.type, "found": count, "min": rule.min, "max": rule.max, "ok": ok}
        )
    passed = all(check["ok"] for check in checks)
    return {"step": "protocol", "result": "passed" if passed else "failed", "checks": checks}


def run_autorun(
    steps: tuple[AutorunStep, ...], session: ArchivedSession, folder: Path, scans: list[ScanRow]
) -> list[dict[str, Any]]:
    """Run every step in order; each result is kept whatever the others did."""
    results = []
    for step in steps:
        if isinstance(step, CommandStep):
            results.append(run_command(step, session, folder))
        else:
            results.append(check_protocol(step, scans))
    return results
