"""The API tests' users, tokens and roles, and a small HTTP client over requests."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd

TOKENS = {
    "root": "root-token",
    "alice": "alice-token",  # owner of DEMO
    "bob": "bob-token",  # member of DEMO
    "carol": "carol-token",  # collaborator on DEMO
    "dave": "dave-token",  # owner of OTHER only
}


def users() -> dict[str, dict]:
    roles = {
        "root": {},
        "alice": {"DEMO": "owner"},
        "bob": {"DEMO": "member"},
        "carol": {"DEMO": "collaborator"},
        "dave": {"OTHER": "owner"},
    }
    return {
        name: {
            "token_sha256": hashlib.sha256(TOKENS[name].encode()).hexdigest(),
            "admin": name == "root",
            "projects": roles[name],
        }
        for name in TOKENS
    }


@dataclass
class Api:
    daemon: Xnatd
    workdir: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.http_port}"

    def call(
        self, method: str, path: str, user: str | None = "root", **kwargs
    ) -> requests.Response:
        kwargs.setdefault("auth", (user, TOKENS[user]) if user else None)
        kwargs.setdefault("timeout", 60)
        return requests.request(method, self.base + path, **kwargs)

    def study_zip(self, seed: str, *, instances: int = 3, **study) -> Path:
        folder = self.workdir / seed
        paths = write_study(
            StudySpec(seed, series=[SeriesSpec(1, instances=instances)], **study), folder
        )
        archive = self.workdir / f"{seed}.zip"
        with zipfile.ZipFile(archive, "w") as out:
            for path in paths:
                out.write(path, path.relative_to(folder))
        return archive

    def upload(self, seed: str, user: str = "root", project: str = "DEMO", **params) -> str:
        archive = self.study_zip(seed, patient_id=seed, patient_name=seed)
        with archive.open("rb") as body:
            response = self.call(
                "POST",
                "/data/services/import",
                user,
                params={"import-handler": "DICOM-zip", "PROJECT_ID": project, **params},
                files={"file": (archive.name, body, "application/zip")},
            )
        assert response.status_code == 200, response.text
        return response.text.strip()
