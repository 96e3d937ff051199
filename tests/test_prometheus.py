"""Monitoring with the real thing: Prometheus scrapes a running xnatd with the sample
configuration, and every query of the Grafana dashboard evaluates and returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import free_port, storescu_send, wait_for

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "etc" / "grafana" / "xnatd.json"
SAMPLE = ROOT / "etc" / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DROP_SERIES = 'version "6.3"\n(0020,0011) = "99" ? reject[]\n'


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def api(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def samples_scraped(port: int) -> float:
    """How many times Prometheus has scraped the xnatd target so far."""
    found = api(port, "query", query='count_over_time(up{job="xnatd"}[10m])')["data"]["result"]
    return float(found[0]["value"][1]) if found else 0.0


@pytest.fixture
def prometheus(tmp_path: Path):
    """A factory: Prometheus started on the sample configuration, pointed at a target."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed (Debian package prometheus; .ci/run installs it)")
    processes: list[subprocess.Popen] = []

    def start(target: str) -> int:
        config = yaml.safe_load(SAMPLE.read_text())
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the child keeps it
        processes.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()

        def ready() -> bool:
            try:
                return api(port, "query", query="1")["status"] == "success"
            except OSError:
                return False

        wait_for(ready, timeout=60, interval=0.2)
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def test_every_dashboard_query_returns_data_after_a_send(
    make_xnatd, prometheus, storescu: str, dcm_dir: Path
) -> None:
    def drop_one_series(settings: dict) -> None:
        (dcm_dir.parent / "drop.das").write_text(DROP_SERIES)
        settings["site"]["anonymization"] = str(dcm_dir.parent / "drop.das")
        settings["site"]["phi_check"] = {"headers": "flag"}

    xnatd = make_xnatd(hook=drop_one_series)
    port = prometheus(f"127.0.0.1:{xnatd.http_port}")
    wait_for(lambda: samples_scraped(port) >= 1, timeout=30, interval=0.2)
    # Two sends with scrapes between: a counter's first sample is already its value, so
    # only the second send shows as a rate.
    for number, name in enumerate(("prom1", "prom2")):
        paths = write_study(
            StudySpec(
                name,
                study_description="DEMO",
                series=[SeriesSpec(1, instances=4), SeriesSpec(99, instances=2)],
            ),
            dcm_dir / name,
        )
        assert storescu_send(storescu, xnatd.port, paths).returncode == 0
        xnatd.wait_status("READY", count=number + 1)
        seen = samples_scraped(port)
        wait_for(lambda s=seen: samples_scraped(port) >= s + 2, timeout=30, interval=0.2)
    empty = []
    for title, expr in dashboard_queries():
        answer = api(port, "query", query=expr)
        assert answer["status"] == "success", (title, expr, answer)
        if not answer["data"]["result"]:
            empty.append(f"{title}: {expr}")
    assert not empty, empty
    received = api(port, "query", query=dashboard_queries()[0][1])["data"]["result"]
    assert any(float(series["value"][1]) > 0 for series in received)
