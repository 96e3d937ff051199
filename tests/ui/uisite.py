"""The review pages in-process: a Site (the daemon's stages, builds on demand) behind
the FastAPI app, with the API tests' users, for TestClient tests and the benchmark."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from apiclient import TOKENS, users
from helpers import Site, free_port


@dataclass
class UiSite:
    site: Site
    server: Any  # xnatd.api.server.ApiServer
    url: str

    def close(self) -> None:
        self.server.shutdown()
        self.site.close()


def ui_site(workdir: Path, **site: Any) -> UiSite:
    """A Site whose configuration has the API tests' users, served over HTTP."""
    from prometheus_client import CollectorRegistry

    from xnatd import config as config_module
    from xnatd.api.deps import Services
    from xnatd.api.server import ApiServer

    projects = {"DEMO": {}, "OTHER": {}, "QUAR": {"quarantine": True}}
    made = Site(workdir, projects, **site)
    settings = yaml.safe_load(made.config_path.read_text())
    settings["users"] = users()
    settings["users"]["alice"]["projects"]["QUAR"] = "owner"
    settings["users"]["carol"]["projects"]["QUAR"] = "collaborator"
    made.config_path.write_text(yaml.safe_dump(settings))
    made.config = config_module.load(made.config_path)
    importer = made.importer
    services = Services(
        store=made.store,
        intake=made.intake,
        importer=importer,
        operations=made.operations,
        config=lambda: made.config,
        registry=CollectorRegistry(),
        health=lambda: {"status": "ok"},
    )
    port = free_port()
    server = ApiServer("127.0.0.1", port, services)
    server.start()
    return UiSite(made, server, f"http://127.0.0.1:{port}")


class Browser(requests.Session):
    """requests with the site's base URL: ``get("/ui/...")``."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base + url, *args, **kwargs)


def signed_in(ui: UiSite, user: str) -> Browser:
    """A client holding the user's session cookie."""
    client = Browser(ui.url)
    answer = client.post(
        "/ui/signin",
        data={"user": user, "token": TOKENS[user], "next": "/ui/prearchive"},
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)
