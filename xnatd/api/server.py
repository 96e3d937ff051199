"""Serving the API with uvicorn on a background thread of the daemon."""

from __future__ import annotations

import threading
import time

import uvicorn

from xnatd.api.app import create_app
from xnatd.api.deps import Services
from xnatd.tls import TLSSettings

START_TIMEOUT = 10.0


class ApiServer:
    """The HTTP API served by uvicorn on a thread of its own."""

    def __init__(
        self, host: str, port: int, services: Services, tls: TLSSettings | None = None
    ) -> None:
        """``tls``: HTTPS only, with that certificate and key (checked at config load)."""
        config = uvicorn.Config(
            create_app(services),
            host=host,
            port=port,
            log_config=None,  # our structlog request events instead of uvicorn's logs
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self) -> None:
        """Serve; returns once the socket listens.

        Raises:
            OSError: the address could not be bound.
        """
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive():
                raise OSError(
                    f"cannot listen on {self.server.config.host}:{self.server.config.port}"
                )
            if time.monotonic() > deadline:
                raise OSError("the HTTP server did not start in time")
            time.sleep(0.02)

    def shutdown(self) -> None:
        """Stop serving; waits up to 10 s for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
