"""The Grafana dashboard only queries metrics the daemon exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from xnatd.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "etc" / "grafana" / "xnatd.json"


def test_every_panel_queries_an_exported_metric(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.watch_state(lambda: {}, tmp_path)
    # Touch each labelled family once so it appears in the exposition.
    metrics.instances.labels("XNAT", "CT", "stored").inc()
    metrics.bytes.labels("XNAT", "CT", "stored").inc()
    metrics.store_latency.labels("XNAT").observe(0.01)
    metrics.associations.labels("XNAT", "CT", "released").inc()
    metrics.associations_active.labels("XNAT").set(0)
    metrics.sessions_built.labels("DEMO", "ready").inc()
    exported = generate_latest(metrics.registry).decode()
    names = set(re.findall(r"^(xnatd_\w+?)(?:\{| )", exported, re.M))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for used in re.findall(r"xnatd_\w+", target["expr"]):
                assert used in names, (panel["title"], used)
