"""One daemon with users and roles, shared by the API tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apiclient import Api, users
from helpers import Xnatd, base_settings, free_port


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api")
    settings = base_settings(free_port(), free_port())
    settings["users"] = users()
    settings["projects"]["QUAR"] = {"quarantine": True}
    settings["users"]["alice"]["projects"]["QUAR"] = "owner"
    settings["users"]["bob"]["projects"]["QUAR"] = "member"
    settings["users"]["carol"]["projects"]["QUAR"] = "collaborator"
    daemon = Xnatd(workdir, settings).start()
    try:
        yield Api(daemon, workdir)
    finally:
        daemon.stop()
