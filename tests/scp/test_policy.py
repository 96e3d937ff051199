"""The calling-side allow-list and AE title checks, without sockets."""

from __future__ import annotations

import pytest

from xnatd.scp.admission import AllowEntry, check_ae_title, is_allowed


def allow(*items: str) -> list[AllowEntry]:
    return [AllowEntry.parse(item) for item in items]


def test_empty_list_admits_everyone() -> None:
    assert is_allowed([], "ANY", "192.0.2.1")


@pytest.mark.parametrize(
    ("items", "calling", "address", "admitted"),
    [
        (["CT1"], "CT1", "192.0.2.1", True),
        (["CT1"], "CT2", "192.0.2.1", False),
        (["CT1@10.0.0.0/8"], "CT1", "10.1.2.3", True),
        (["CT1@10.0.0.0/8"], "CT1", "192.0.2.1", False),
        (["CT1@10.0.0.0/8"], "MR1", "10.1.2.3", False),
        (["192.168.1.7"], "ANYONE", "192.168.1.7", True),
        (["192.168.1.7"], "ANYONE", "192.168.1.8", False),
        (["127.0.0.0/8", "PACS"], "PACS", "192.0.2.1", True),
        (["::1"], "X", "::1", True),
        (["::1"], "X", "127.0.0.1", False),
    ],
)
def test_allow_list(items: list[str], calling: str, address: str, admitted: bool) -> None:
    assert is_allowed(allow(*items), calling, address) is admitted


@pytest.mark.parametrize("bad", ["", "CT1@not-an-ip", "A" * 17, "BACK\\SLASH", 42])
def test_bad_entries_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        AllowEntry.parse(bad)


@pytest.mark.parametrize("bad", ["", " XNAT", "A" * 17, "X\\Y", "É"])
def test_bad_ae_titles(bad: str) -> None:
    with pytest.raises(ValueError):
        check_ae_title(bad)
