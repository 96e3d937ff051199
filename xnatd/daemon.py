"""The daemon: the stages ``pipeline.py`` assembles, the doors into them and their timers,
started, reloaded and stopped together.

receivers (scp), HTTP (api), inbox -> intake -> durable write (store) -> idle sweeper
(assembler) -> archiver (archive)

Like uvicorn's ``Server``: ``startup``, ``main_loop``, ``shutdown``; signal handlers
only flip flags (SIGTERM/SIGINT: exit, SIGHUP: reload).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from xnatd import config as config_module
from xnatd import logs, memory, systemd
from xnatd.api.deps import Services
from xnatd.api.server import ApiServer
from xnatd.archive.archiver import Archiver
from xnatd.assembler.sweeper import Sweeper
from xnatd.config import Config, ConfigError, Receiver
from xnatd.intake.inbox import Inbox
from xnatd.intake.open_associations import Associations
from xnatd.metrics import Metrics
from xnatd.pipeline import Pipeline, open_store
from xnatd.process import die_with_parent
from xnatd.scp import hooks
from xnatd.scp.commitment import CommitmentService, Committer
from xnatd.scp.dataphase import spill_large_data_sets
from xnatd.scp.guard import ConnectionGuard
from xnatd.scp.handlers import event_handlers
from xnatd.scp.handoff import Dispatcher, HandoffReceiver, Load
from xnatd.scp.listeners import Listeners
from xnatd.store.commitments import Commitments
from xnatd.workers import Workers, shared_metrics_dir

log = structlog.get_logger(__name__)

HOUSEKEEPING = 60.0  # seconds between looks for archives left half done by a dead process
DRAIN_TIMEOUT = 30.0  # how long SIGTERM waits for open associations to finish
GIVE_BACK = 60.0  # seconds between handing the allocator's free pages back (memory.py)


class StartupError(Exception):
    """The daemon cannot start as configured (a port in use); the message says which."""


class Daemon:
    """One xnatd process: the main one, or a receiving worker (``worker`` > 0)."""

    def __init__(self, config_path: Path, worker: int = 0) -> None:
        """``worker`` > 0: one of the extra receiving processes (see ``xnatd.workers``)."""
        self.config_path = config_path
        self.config: Config = config_module.load(config_path)
        self.worker = worker
        self.node = self.config.site.node + (f"/w{worker}" if worker else "")
        self.should_exit = threading.Event()
        self.reload_requested = False
        self.workers: Workers | None = None
        self.dispatcher: Dispatcher | None = None
        self.archiver: Archiver | None = None
        self.sweeper: Sweeper | None = None
        self.inbox: Inbox | None = None
        self.http: ApiServer | None = None
        self.committer: Committer | None = None

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        """Open the store and start every stage the configuration asks for.

        Raises:
            StartupError: a receiver or the HTTP API cannot listen, or pynetdicom is not
                a version ``scp/hooks.py`` supports.
            SystemExit: ``xnatd reindex`` holds the index.
        """
        config = self.config
        logs.configure(config.logging.format, config.logging.level)
        try:
            hooks.install()
        except hooks.UnsupportedPynetdicom as exc:
            raise StartupError(str(exc)) from None
        if self.worker:
            die_with_parent()
        self.store = open_store(config)
        data = self.store.data
        self.index = self.store.index
        self.prearchive = self.store.prearchive
        # Held for the daemon's life: reindex refuses while any daemon holds it.
        if not self.worker and not self.index.hold(exclusive=False):
            self.store.close()
            raise SystemExit(
                f"xnatd: {self.index} is being rebuilt (xnatd reindex); start when it is done"
            )
        # Whatever this node had open or was building died with its previous process.
        self.prearchive.forget_node(self.node)
        # Data sets too large to hold in memory spill here as they arrive.
        spill_large_data_sets(data.fresh_spool(self.node))
        self.metrics = Metrics(shared_metrics_dir())
        self.pipeline = Pipeline.assemble(self.store, lambda: self.config, self.metrics, self.node)
        self.intake = self.pipeline.intake
        self.associations = Associations(
            self.prearchive, self.metrics, self.node, lease=config.site.lease
        )

        commitments = Commitments(self.index, self.store.audit)
        answer_commitments = CommitmentService(commitments).handlers(self.associations)

        def handlers(receivers: Callable[[], Mapping[str, Receiver]]) -> list:
            table = event_handlers(self.intake, self.associations, receivers, self.metrics)
            return table + answer_commitments

        self.guard = ConnectionGuard(config.associations, self.metrics)

        if self.worker:  # serves the connections the main process hands over
            handed = HandoffReceiver.from_environment(
                lambda client, host, port: self.listeners.serve(client, host, port)
            )
            self.listeners = Listeners(
                handlers,
                load=handed.load if handed else None,
                handed_only=True,
                guard=self.guard,
            )
            self.listeners.apply(config.receivers)
            if handed is not None:
                handed.start()
            log.info("worker_ready", worker=self.worker, node=self.node)
            return
        if config.workers > 1:
            load = Load()
            self.dispatcher = Dispatcher(load)
            self.listeners = Listeners(
                handlers, load=load, place=self.dispatcher.place, guard=self.guard
            )
        else:
            self.listeners = Listeners(handlers, guard=self.guard)
        self.listeners.apply(config.receivers)
        if self.listeners.failed:  # a receiver that cannot listen is a broken start
            self.listeners.stop_accepting()
            raise StartupError(
                "; ".join(
                    f"cannot listen for DICOM on {e.host}:{e.port}: {why}"
                    for e, why in self.listeners.failed.items()
                )
            )
        self.metrics.watch_state(self.index.count_by_status, data.root)
        threading.Thread(target=self._remove_stray_parts, name="stray-parts", daemon=True).start()
        self.archiver = self.pipeline.archiver
        self.sweeper = Sweeper(
            self.store.assembly,
            self.pipeline.builder,
            idle_timeout=config.site.session_idle_timeout,
            node=self.node,
            on_ready=self.archiver.after_build,
        )
        operations, importer = self.pipeline.operations, self.pipeline.importer
        if config.http is not None:
            services = Services(
                store=self.store,
                intake=self.intake,
                importer=importer,
                operations=operations,
                config=lambda: self.config,
                registry=self.metrics.registry,
                health=self.health,
            )
            self.http = ApiServer(config.http.host, config.http.port, services, config.http.tls)
            try:
                self.http.start()
            except OSError as exc:
                self.listeners.stop_accepting()
                raise StartupError(f"HTTP (http.listen): {exc}") from None
        self.sweeper.start()
        self.committer = Committer(commitments, lambda: self.config, self.node)
        self.committer.start()
        if self.dispatcher is not None:
            self.workers = Workers(self.config_path, config.workers, self.dispatcher)
            self.workers.start()
        if config.inbox.enabled:
            self.inbox = Inbox(data.root / "inbox", importer, config.inbox.settle)
            self.inbox.start()
        log.info(
            "daemon_started",
            config=str(self.config_path),
            data_dir=str(data.root),
            index=config.index if config.index == "sqlite" else "postgresql",
            receivers=[f"{r.ae_title}@{r.host}:{r.port}" for r in config.receivers],
            http=f"{config.http.host}:{config.http.port}" if config.http else None,
        )
        systemd.notify("READY=1\nSTATUS=receiving")

    def _remove_stray_parts(self) -> None:
        """Temporary files left by writers killed before their rename (off the start-up
        path: it walks every folder of the data directory)."""
        try:
            removed = self.store.remove_stray_parts()
        except OSError:
            log.exception("stray_parts_sweep_failed")
            return
        if removed:
            log.warning("stray_parts_removed", files=len(removed))

    def health(self) -> dict:
        """The ``/healthz`` answer: degraded while a receiver cannot listen or a worker
        was given up on, with which ones.
        """
        failed = {f"{e.host}:{e.port}": why for e, why in self.listeners.failed.items()}
        workers = dict(self.workers.given_up) if self.workers is not None else {}
        degraded = failed or workers
        return {
            "status": "degraded" if degraded else "ok",
            "receivers_down": failed,
            "workers_down": {str(k): v for k, v in workers.items()},
        }

    def main_loop(self) -> None:
        """Until asked to exit: reload when asked, renew leases, watch the workers and
        resume archives a dead process left, each on its own period.
        """
        watchdog = systemd.watchdog_interval()
        tick = min(1.0, watchdog or 1.0)
        renewal = self.config.site.lease / 3  # a lease outlives two missed renewals
        next_renewal = time.monotonic() + renewal
        next_housekeeping = time.monotonic()
        users_seen = self._users_stamp()
        next_give_back = time.monotonic() + GIVE_BACK
        while not self.should_exit.wait(tick):
            if time.monotonic() >= next_give_back:
                next_give_back = time.monotonic() + GIVE_BACK
                memory.give_back()
            if watchdog:
                systemd.notify("WATCHDOG=1")
            if not self.worker and self._users_stamp() != users_seen:
                users_seen = self._users_stamp()  # `xnatd users` wrote: tokens apply now
                self.reload_requested = True
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + renewal
                try:
                    self.associations.renew_leases()
                except Exception:
                    log.exception("lease_renewal_failed")
            if self.workers is not None:
                self.workers.check()
            if self.archiver is not None and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING
                try:
                    self.archiver.resume_stale()
                except Exception:
                    log.exception("resume_archives_failed")

    def _users_stamp(self) -> tuple[int, int] | None:
        """When and how big the users file is, to notice `xnatd users` changing it."""
        path = self.config.users_file
        try:
            info = path.stat() if path is not None else None
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size) if info is not None else None

    def reload(self) -> None:
        """Swap in the file's new contents; a file that does not validate changes nothing."""
        try:
            new = config_module.load(self.config_path)
        except ConfigError as exc:
            log.error("reload_refused", problems=exc.problems)
            return
        before = (self.config.site.data_dir, self.config.index, self.config.workers)
        if (new.site.data_dir, new.index, new.workers) != before:
            log.warning("reload_needs_restart", keys=["site.data_dir", "index", "workers"])
        self.config = new
        self.prearchive.min_free_disk = new.site.min_free_disk
        self.guard.settings = new.associations
        if self.sweeper is not None:
            self.sweeper.idle_timeout = new.site.session_idle_timeout
        self.listeners.apply(new.receivers)
        if self.workers is not None:
            self.workers.signal(signal.SIGHUP)
        log.info("config_reloaded", receivers=[f"{r.ae_title}:{r.port}" for r in new.receivers])

    def shutdown(self) -> None:
        """Stop accepting, let open associations and builds finish, then close the index."""
        if not self.worker:
            systemd.notify("STOPPING=1")
        if self.workers is not None:
            self.workers.signal(signal.SIGTERM)  # they drain their associations meanwhile
        stopped = self.listeners.stop_accepting()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline and any(s.active_associations for s in stopped):
            time.sleep(0.05)
        if self.workers is not None:
            self.workers.stop()
        if self.inbox is not None:
            self.inbox.stop()
        if self.sweeper is not None:
            self.sweeper.stop(wait=True)
            self.sweeper.builder.pixels.close()
        if self.committer is not None:
            self.committer.stop()
        if self.http is not None:
            self.http.shutdown()
        self.index.release_claims(self.node)
        self.store.close()
        log.info("daemon_stopped", worker=self.worker or None)

    def run(self) -> None:
        """Start, run until SIGTERM or SIGINT, then shut down (also after a failure)."""
        self.install_signal_handlers()
        self.startup()
        try:
            self.main_loop()
        finally:
            self.shutdown()

    # -- signals only flip flags -----------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask to exit, SIGHUP to reload."""
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGINT, self.handle_exit)
        signal.signal(signal.SIGHUP, self.handle_reload)

    def handle_exit(self, signum: int, frame: object) -> None:
        """Ask the main loop to stop (a signal handler: it only sets a flag)."""
        self.should_exit.set()

    def handle_reload(self, signum: int, frame: object) -> None:
        """Ask the main loop to reload the configuration (a signal handler)."""
        self.reload_requested = True
