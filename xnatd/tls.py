"""TLS contexts from certificate files (SPEC 10.4): DICOM receivers, HTTPS, ``xnatd send``.

A context is built once, when the configuration is loaded (so ``check-config`` and a
SIGHUP reload read the files and report a bad one), and every connection afterwards
uses it. TLS 1.2 is the oldest version either side accepts.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TLSError(Exception):
    """A certificate, key or CA file that cannot be used; ``key`` names which one
    (``cert``, ``key`` or ``ca``) and the message is one line."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class TLSSettings:
    """``tls:`` of a receiver or of ``http``, with the context built from it."""

    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


def _readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TLSError(key, f"{path} cannot be read: {exc.strerror or exc}") from None


def _load_identity(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    _readable("cert", cert)
    _readable("key", key)
    try:
        # A password that is never right: an encrypted key fails here instead of
        # prompting on the daemon's terminal.
        context.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        raise TLSError(
            "key",
            f"{cert} and {key} are not a PEM certificate and its unencrypted private key "
            f"({exc.reason or exc})",
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    _readable("ca", ca)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise TLSError("ca", f"{ca} holds no PEM CA certificate ({exc.reason or exc})") from None


def server_context(
    cert: Path, key: Path, ca: Path | None = None, require_client_cert: bool = False
) -> ssl.SSLContext:
    """A server context: with ``require_client_cert``, only peers whose certificate
    ``ca`` signed complete the handshake; with ``ca`` alone, a certificate the peer
    offers must be valid, but none is needed.

    Raises:
        TLSError: a file is missing or unusable.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_identity(context, cert, key)
    if ca is not None:
        _load_ca(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context that checks the server's certificate against ``ca`` (the
    system's CAs without it) and its host name, offering ``cert`` when given.

    Raises:
        TLSError: a file is missing or unusable.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MINIMUM_VERSION
    if ca is not None:
        _load_ca(context, ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise TLSError("cert" if cert is None else "key", "a certificate needs its key")
        _load_identity(context, cert, key)
    return context


def peer_subject(sock: ssl.SSLSocket) -> str | None:
    """The commonName of the peer's verified certificate, if it sent one."""
    certificate = sock.getpeercert() or {}
    subject: Any = certificate.get("subject", ())  # ((("commonName", "x"),), ...)
    for part in subject:
        for name, value in part:
            if name == "commonName":
                return str(value)
    return None
