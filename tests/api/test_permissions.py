"""Every role against every endpoint (issue 8's permission matrix), and quarantine.

Roles: alice owns DEMO and QUAR, bob is a member, carol a collaborator, dave owns
only OTHER, root is a site admin. 401 without credentials; 404 where a user may not
see the project (nothing revealed); 403 where they see it but their role forbids.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from apiclient import Api
from dicomgen import SeriesSpec, StudySpec, instance

USERS = ("root", "alice", "bob", "carol", "dave", None)
_seeds = itertools.count()


def prearchived(api: Api, project: str = "DEMO") -> str:
    return "/data" + api.upload(f"perm{next(_seeds)}", project=project)


def archived(api: Api, project: str = "DEMO") -> str:
    uri = api.upload(f"perm{next(_seeds)}", project=project)
    response = api.call("POST", "/data/services/archive", params={"src": uri})
    assert response.status_code == 200, response.text
    label = response.text.strip().rsplit("/", 1)[-1]
    rows = api.call("GET", f"/data/projects/{project}/experiments").json()["ResultSet"]["Result"]
    return next(r["URI"] for r in rows if r["label"] == label)


def stow_body() -> tuple[bytes, dict[str, str]]:
    import io

    from pydicom.filewriter import dcmwrite

    seed = f"stowperm{next(_seeds)}"
    study = StudySpec(seed, series=[SeriesSpec(1, instances=1)])
    buffer = io.BytesIO()
    dcmwrite(buffer, instance(study, study.series[0], 1), enforce_file_format=True)
    body = (
        b"--XNATD\r\nContent-Type: application/dicom\r\n\r\n"
        + buffer.getvalue()
        + b"\r\n--XNATD--\r\n"
    )
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=XNATD'}
    return body, headers


def _import(api: Api, user: str | None):
    archive = api.study_zip(f"permimport{next(_seeds)}")
    with archive.open("rb") as body:
        return api.call(
            "POST",
            "/data/services/import",
            user,
            params={"PROJECT_ID": "DEMO"},
            files={"file": (archive.name, body)},
        )


def _stow(api: Api, user: str | None):
    body, headers = stow_body()
    return api.call("POST", "/dicomweb/projects/DEMO/studies", user, data=body, headers=headers)


Call = Callable[[Api, "str | None"], object]
# name: (call, expected for root, alice, bob, carol, dave, anonymous)
MATRIX: dict[str, tuple[Call, tuple[int, ...]]] = {
    "list prearchive of DEMO": (
        lambda api, u: api.call("GET", "/data/prearchive/projects/DEMO", u),
        (200, 200, 200, 404, 404, 401),
    ),
    "show a DEMO prearchive session": (
        lambda api, u: api.call("GET", prearchived(api), u),
        (200, 200, 200, 404, 404, 401),
    ),
    "list prearchive of Unassigned": (
        lambda api, u: api.call("GET", "/data/prearchive/projects/Unassigned", u),
        (200, 404, 404, 404, 404, 401),
    ),
    "list DEMO experiments": (
        lambda api, u: api.call("GET", "/data/projects/DEMO/experiments", u),
        (200, 200, 200, 200, 404, 401),
    ),
    "get an active DEMO experiment": (
        lambda api, u: api.call("GET", archived(api), u),
        (200, 200, 200, 200, 404, 401),
    ),
    "get a quarantined experiment": (
        lambda api, u: api.call("GET", archived(api, "QUAR"), u),
        (200, 200, 200, 404, 404, 401),
    ),
    "download an active DEMO experiment": (
        lambda api, u: api.call("GET", archived(api) + "/scans/ALL/files?format=zip", u),
        (200, 200, 200, 200, 404, 401),
    ),
    "import a zip into DEMO": (_import, (200, 200, 200, 403, 404, 401)),
    "STOW-RS into DEMO": (_stow, (200, 200, 200, 403, 404, 401)),
    "build a DEMO prearchive session": (
        lambda api, u: api.call("POST", prearchived(api), u, params={"action": "build"}),
        (200, 200, 200, 404, 404, 401),
    ),
    "commit a DEMO prearchive session (manual: it stays, READY)": (
        lambda api, u: api.call("POST", prearchived(api), u, params={"action": "commit"}),
        (200, 200, 403, 404, 404, 401),
    ),
    "archive a DEMO prearchive session": (
        lambda api, u: api.call(
            "POST", "/data/services/archive", u, params={"src": prearchived(api)[5:]}
        ),
        (200, 200, 403, 404, 404, 401),
    ),
    "move a DEMO prearchive session to OTHER": (
        lambda api, u: api.call(
            "POST", prearchived(api), u, params={"action": "move", "newProject": "OTHER"}
        ),
        (200, 404, 403, 404, 404, 401),  # alice owns DEMO but may not write to OTHER
    ),
    "delete a DEMO prearchive session": (
        lambda api, u: api.call("DELETE", prearchived(api), u),
        (200, 200, 403, 404, 404, 401),
    ),
    "release a quarantined experiment": (
        lambda api, u: api.call("POST", archived(api, "QUAR"), u, params={"action": "release"}),
        (200, 200, 403, 404, 404, 401),
    ),
    "delete an active DEMO experiment": (
        lambda api, u: api.call("DELETE", archived(api), u),
        (200, 200, 403, 403, 404, 401),
    ),
}


@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(api: Api, endpoint: str) -> None:
    call, expected = MATRIX[endpoint]
    got = tuple(call(api, user).status_code for user in USERS)
    assert dict(zip(USERS, got, strict=True)) == dict(zip(USERS, expected, strict=True))


def test_a_wrong_token_is_401_and_nothing_is_revealed(api: Api) -> None:
    response = api.call("GET", "/data/prearchive/projects", None, auth=("alice", "wrong"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    unknown = api.call("GET", "/data/projects/NOPE/experiments", "alice")
    hidden = api.call("GET", "/data/projects/OTHER/experiments", "alice")
    assert (unknown.status_code, unknown.json()) == (hidden.status_code, hidden.json())


def test_quarantined_sessions_are_invisible_to_collaborators(api: Api) -> None:
    uri = archived(api, "QUAR")
    session_id = uri.rsplit("/", 1)[-1]

    def listed(user: str) -> list[str]:
        response = api.call("GET", "/data/projects/QUAR/experiments", user)
        return [r["ID"] for r in response.json()["ResultSet"]["Result"]]

    assert session_id in listed("bob") and session_id not in listed("carol")
    assert api.call("GET", uri, "carol").status_code == 404
    assert api.call("POST", uri, "alice", params={"action": "release"}).status_code == 200
    assert session_id in listed("carol")
    assert api.call("GET", uri, "carol").status_code == 200


def test_the_prearchive_listing_shows_each_user_only_their_projects(api: Api) -> None:
    prearchived(api, "OTHER")
    prearchived(api, "DEMO")

    def projects(user: str) -> set[str]:
        rows = api.call("GET", "/data/prearchive/projects", user).json()["ResultSet"]["Result"]
        return {r["project"] for r in rows}

    assert projects("dave") == {"OTHER"}
    assert projects("bob") == {"DEMO"}
    assert projects("carol") == set()
    assert {"DEMO", "OTHER"} <= projects("root")
