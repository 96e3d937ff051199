"""Prometheus metrics (SPEC section 8), all named ``xnatd_*``, in one registry per daemon."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from xnatd.store.index.records import Status

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class _StateCollector(Collector):
    """Gauges read at scrape time: sessions by status (from the index) and free disk."""

    def __init__(self, count_by_status: Callable[[], dict[str, int]], data_dir: Path) -> None:
        self.count_by_status = count_by_status
        self.data_dir = data_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily(
            "xnatd_prearchive_sessions", "Prearchive sessions by status", labels=["status"]
        )
        counts = self.count_by_status()
        for status in Status:
            sessions.add_metric([status.value], counts.get(status.value, 0))
        yield sessions
        stats = os.statvfs(self.data_dir)
        yield GaugeMetricFamily(
            "xnatd_free_disk_bytes",
            "Free bytes on the data directory's file system",
            value=stats.f_bavail * stats.f_frsize,
        )


class Metrics:
    """The daemon's counters and histograms."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """With ``multiprocess_dir`` (several receiving processes), every process writes
        its values there and ``registry`` serves the sum over all of them (prometheus
        client's multiprocess mode; PROMETHEUS_MULTIPROC_DIR must name the same folder
        before prometheus_client is imported)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if multiprocess_dir is not None:
            MultiProcessCollector(self.registry, path=str(multiprocess_dir))
            r = CollectorRegistry()  # this process's own values, not served directly
        self.associations = Counter(
            "xnatd_associations",
            "Associations by called AE, calling AE and result",
            ["ae", "calling_ae", "result"],
            registry=r,
        )
        self.associations_active = Gauge(
            "xnatd_associations_active",
            "Associations open now",
            ["ae"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.associations_refused = Counter(
            "xnatd_associations_refused",
            "Connections refused or closed before an association, by reason",
            ["reason"],
            registry=r,
        )
        self.instances = Counter(
            "xnatd_instances_received",
            "Instances received by AE, calling AE and status",
            ["ae", "calling_ae", "status"],
            registry=r,
        )
        self.bytes = Counter(
            "xnatd_bytes_received",
            "Bytes received by AE, calling AE and status",
            ["ae", "calling_ae", "status"],
            registry=r,
        )
        self.store_latency = Histogram(
            "xnatd_store_latency_seconds",
            "Receive to acknowledgement, per instance",
            ["ae"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions_built = Counter(
            "xnatd_sessions_built",
            "Sessions built by project and result",
            ["project", "result"],
            registry=r,
        )
        self.build_duration = Histogram(
            "xnatd_build_duration_seconds",
            "Time to build a session document",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.sessions_archived = Counter(
            "xnatd_sessions_archived",
            "Sessions archived by project and result",
            ["project", "result"],
            registry=r,
        )
        self.archive_duration = Histogram(
            "xnatd_archive_duration_seconds",
            "Time to archive a session",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.anonymization_rejects = Counter(
            "xnatd_anonymization_rejects",
            "Files dropped by reject[] in a script",
            ["script"],
            registry=r,
        )
        self.anonymization_errors = Counter(
            "xnatd_anonymization_errors", "Files a script failed on", ["script"], registry=r
        )
        self.phi_findings = Counter(
            "xnatd_phi_findings",
            "Possible patient information found after anonymization, by kind and what",
            ["kind", "what"],
            registry=r,
        )

    def watch_state(self, count_by_status: Callable[[], dict[str, int]], data_dir: Path) -> None:
        """Report sessions by status and the data directory's free disk at each scrape."""
        self.registry.register(_StateCollector(count_by_status, data_dir))
