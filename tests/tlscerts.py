"""Throw-away certificate authorities and certificates for TLS tests (``openssl`` CLI).

Everything is made in the test's own temporary folder: no key is ever committed.
RSA keys, which every DCMTK TLS profile accepts.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args[:2])} failed: {result.stderr}")


def make_ca(folder: Path, name: str) -> Issued:
    """A self-signed CA certificate valid for two days."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return Issued(cert, key)


def issue(folder: Path, name: str, ca: Issued) -> Issued:
    """A certificate ``ca`` signed for 127.0.0.1 and localhost, usable by a server
    and by a client."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
        "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext", "extendedKeyUsage=serverAuth,clientAuth",
    )  # fmt: skip
    return Issued(cert, key)


@dataclass(frozen=True)
class Pki:
    """The site's CA, the daemon's certificate, a scanner it signed, and a stranger
    from another CA."""

    ca: Issued
    server: Issued
    scanner: Issued
    stranger: Issued


def make_pki(folder: Path) -> Pki:
    ca = make_ca(folder, "site-ca")
    other = make_ca(folder, "other-ca")
    return Pki(
        ca=ca,
        server=issue(folder, "xnatd", ca),
        scanner=issue(folder, "scanner", ca),
        stranger=issue(folder, "stranger", other),
    )
