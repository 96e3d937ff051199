"""The README's "Try it" block works as written, against the embedded default config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def try_it_block() -> str:
    """The first ``sh`` block under "## Try it"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Try it") :]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_try_it_block_runs_as_written(tmp_path: Path) -> None:
    """The default config copied to a fresh folder (ports changed): the README's commands
    send a sample to project DEMO, build and archive it, add a user and use its token."""
    dicom, http = free_port(), free_port()
    (tmp_path / "etc").mkdir()
    default = (ROOT / "etc" / "xnatd.yaml").read_text()
    assert "port: 8104" in default and '"127.0.0.1:8080"' in default
    config = default.replace("port: 8104", f"port: {dicom}").replace(
        '"127.0.0.1:8080"', f'"127.0.0.1:{http}"'
    )
    (tmp_path / "etc" / "xnatd.yaml").write_text(config)
    script = (
        try_it_block()
        .replace(" 8104 ", f" {dicom} ")
        .replace("--port 8104", f"--port {dicom}")
        .replace("127.0.0.1:8080", f"127.0.0.1:{http}")
        .replace("/tmp/mr.dcm", str(tmp_path / "mr.dcm"))
    )
    env = {k: v for k, v in os.environ.items() if k != "XNATD_CONFIG"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - the child keeps it
    daemon = subprocess.Popen(
        ["xnatd", "run", "-c", "etc/xnatd.yaml"], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    log.close()
    try:
        wait_for(lambda: serves(http), timeout=30)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert re.search(r"DEMO/\d{8}_\d{9}/SUBJ01_MR1", out), out
    assert re.search(r"XNAT_E00001\s+DEMO\s+SUBJ01\s+SUBJ01_MR1", out), out
    assert '"label":"SUBJ01_MR1"' in out.replace(" ", ""), out
    assert re.search(r'^xnatd_instances_received_total\{.*status="stored"\} 1\.0$', out, re.M), out
