"""``receivers[].tls`` and ``http.tls`` (SPEC 10.1, 10.4): files read at load, each
problem one line naming its key and the file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tlscerts import Pki, make_pki

from xnatd import config
from xnatd.config import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(tmp_path: Path, receivers: list[dict], http: dict | None = None) -> Path:
    path = tmp_path / "xnatd.yaml"
    settings: dict = {"receivers": receivers}
    if http is not None:
        settings["http"] = http
    path.write_text(yaml.safe_dump(settings))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    return caught.value.problems


def test_tls_files_relative_to_the_config_load_into_a_context(tmp_path: Path, pki: Pki) -> None:
    shutil.copytree(pki.ca.cert.parent, tmp_path / "tls")
    tls = {"cert": "tls/xnatd.pem", "key": "tls/xnatd.key", "ca": "tls/site-ca.pem"}
    path = write(
        tmp_path,
        [{"ae_title": "XNAT", "port": 11112, "tls": {**tls, "require_client_cert": True}}],
        {"listen": "127.0.0.1:8443", "tls": {"cert": tls["cert"], "key": tls["key"]}},
    )
    loaded = config.load(path)
    [receiver] = loaded.receivers
    assert receiver.tls is not None and receiver.tls.cert == tmp_path / "tls/xnatd.pem"
    assert receiver.tls.context is not None and receiver.tls.require_client_cert
    assert loaded.http is not None and loaded.http.tls is not None


def test_a_missing_certificate_is_one_line_naming_key_and_path(tmp_path: Path, pki: Pki) -> None:
    tls = {"cert": "tls/missing.pem", "key": str(pki.server.key)}
    path = write(tmp_path, [{"ae_title": "XNAT", "port": 11112, "tls": tls}])
    missing = tmp_path / "tls/missing.pem"
    assert problems(path) == [
        f"receivers[0].tls.cert: {missing} cannot be read: No such file or directory"
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "xnatd", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode != 0
    assert "Traceback" not in checked.stderr
    assert f"receivers[0].tls.cert: {missing} cannot be read" in checked.stdout + checked.stderr


def test_unusable_tls_settings_are_named(tmp_path: Path, pki: Pki) -> None:
    mismatched = {"cert": str(pki.server.cert), "key": str(pki.scanner.key)}
    no_ca = {"cert": str(pki.server.cert), "key": str(pki.server.key), "require_client_cert": True}
    not_a_ca = {"cert": str(pki.server.cert), "key": str(pki.server.key), "ca": __file__}
    path = write(
        tmp_path,
        [
            {"ae_title": "A", "port": 11112, "tls": mismatched},
            {"ae_title": "B", "port": 11113, "tls": no_ca},
            {"ae_title": "C", "port": 11114, "tls": not_a_ca},
            {"ae_title": "D", "port": 11115, "tls": {"cert": str(pki.server.cert)}},
        ],
        {"listen": "127.0.0.1:8443", "tls": {"cert": "x.pem", "key": "x.key", "ca": "c.pem"}},
    )
    found = problems(path)
    assert any(p.startswith("receivers[0].tls.key: ") and "private key" in p for p in found)
    assert "receivers[1].tls.require_client_cert: needs receivers[1].tls.ca, " in "\n".join(found)
    assert any(p.startswith(f"receivers[2].tls.ca: {__file__} holds no PEM CA") for p in found)
    assert "receivers[3].tls.key: is required" in found
    assert "http.tls.ca: unknown key" in found


def test_ae_titles_sharing_a_port_share_its_tls(tmp_path: Path, pki: Pki) -> None:
    tls = {"cert": str(pki.server.cert), "key": str(pki.server.key)}
    path = write(
        tmp_path,
        [
            {"ae_title": "SECURE", "port": 11112, "tls": tls},
            {"ae_title": "PLAIN", "port": 11112},
        ],
    )
    assert problems(path) == [
        "receivers[1].tls: port 11112 is shared with receivers[0], whose tls differs; "
        "AE titles sharing a port share its tls"
    ]


def test_storage_commitment_and_its_peers(tmp_path: Path) -> None:
    """``storage_commitment: off | durable | archived`` (YAML's bare off too) and
    ``commitment_peers: {AE: host:port}``."""
    good = write(
        tmp_path,
        [
            {"ae_title": "A", "port": 11112, "storage_commitment": False},
            {
                "ae_title": "B",
                "port": 11113,
                "storage_commitment": "archived",
                "commitment_peers": {"SCANNER": "10.0.0.5:104"},
            },
        ],
    )
    first, second = config.load(good).receivers
    assert first.storage_commitment == "off"
    assert (second.storage_commitment, second.commitment_peers) == (
        "archived",
        {"SCANNER": ("10.0.0.5", 104)},
    )
    bad = write(
        tmp_path,
        [
            {
                "ae_title": "A",
                "port": 11112,
                "storage_commitment": "sometimes",
                "commitment_peers": {"SCANNER": "10.0.0.5"},
            }
        ],
    )
    assert problems(bad) == [
        "receivers[0].storage_commitment: 'sometimes' is not one of off, durable, archived",
        "receivers[0].commitment_peers.SCANNER: '10.0.0.5' is not host:port",
    ]
