"""Configuration (SPEC section 2): every problem reported with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xnatd import config
from xnatd.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def load_text(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "xnatd.yaml"
    path.write_text(text)
    return config.load(path)


def problems(tmp_path: Path, settings: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, yaml.safe_dump(settings))
    return caught.value.problems


def test_embedded_default_loads() -> None:
    """etc/xnatd.yaml runs out of the box: SQLite, var/, AE XNAT on 8104, HTTP on 8080."""
    loaded = config.load(ROOT / "etc" / "xnatd.yaml")
    assert loaded.index == "sqlite"
    assert loaded.site.data_dir == (ROOT / "var").resolve()
    assert [(r.ae_title, r.port) for r in loaded.receivers] == [("XNAT", 8104)]
    assert (loaded.http.host, loaded.http.port) == ("127.0.0.1", 8080)
    assert loaded.site.session_idle_timeout == 300


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "site: {data_dir: ./d}\n")
    assert loaded.site.data_dir == (tmp_path / "d").resolve()


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "site": {"session_idle_timeout": "5 minutes", "min_free_disk": "lots"},
            "receivers": [
                {"ae_title": "XNAT", "port": 8104},
                {"ae_title": "XNAT", "port": 8104, "default_project": "NOPE"},
                {"ae_title": "A" * 17, "port": 70000, "allow": ["bad@999.1.1.1"]},
            ],
            "routing": {"project": ["(0008,0050):([a-z"]},
            "projects": {"P1": {"prearchive": "sometimes"}},
            "colour": "blue",
        },
    )
    expected_keys = [
        "site.session_idle_timeout:",
        "site.min_free_disk:",
        "receivers[1].port: AE title XNAT on port 8104 is already used by receivers[0]",
        "receivers[1].default_project:",
        "receivers[2].ae_title:",
        "receivers[2].port:",
        "receivers[2].allow[0]:",
        "routing.project[0]:",
        "projects.P1.prearchive:",
        "colour: unknown key",
    ]
    for key in expected_keys:
        assert any(problem.startswith(key) for problem in found), (key, found)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "missing.yaml")
    assert "cannot read the file" in caught.value.problems[0]
    assert "missing.yaml" in str(caught.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "site:\n  id: [unclosed\n")
    assert "line" in caught.value.problems[0]


def test_missing_script_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, {"site": {"anonymization": "anon/site.das"}})
    assert any(p.startswith("site.anonymization:") and "site.das" in p for p in found)


def test_lookup_tables_are_loaded_beside_their_script(tmp_path: Path) -> None:
    """A script calling lookup[] needs its table named; a bad table line is named."""
    (tmp_path / "site.das").write_text('(0010,0010) := lookup["pn", (0010,0010)]\n')
    (tmp_path / "site.lookup").write_text("# names\npn/DOE^JOHN = SUBJ001\n")
    (tmp_path / "bad.lookup").write_text("pn/DOE^JOHN = SUBJ001\nno slash here\n")
    (tmp_path / "plain.das").write_text('(0010,0010) := "x"\n')

    loaded = load_text(
        tmp_path, "site: {anonymization: site.das, anonymization_lookup: site.lookup}\n"
    )
    assert loaded.site.script is not None
    assert dict(loaded.site.script.lookup or {}) == {"pn/DOE^JOHN": "SUBJ001"}

    missing = problems(tmp_path, {"site": {"anonymization": "site.das"}})
    assert any(
        p.startswith("site.anonymization:") and "site.anonymization_lookup" in p for p in missing
    )
    bad = problems(
        tmp_path,
        {"projects": {"P": {"anonymization": "plain.das", "anonymization_lookup": "bad.lookup"}}},
    )
    assert any(
        p.startswith("projects.P.anonymization_lookup:") and "bad.lookup, line 2" in p for p in bad
    )


def test_ae_titles_may_share_a_port(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        yaml.safe_dump(
            {
                "receivers": [
                    {"ae_title": "XNAT", "port": 8104},
                    {"ae_title": "RESEARCH", "port": 8104, "allow": ["CT1@10.0.0.0/8"]},
                ]
            }
        ),
    )
    assert [r.ae_title for r in loaded.receivers] == ["XNAT", "RESEARCH"]


def test_alias_clash_between_projects(tmp_path: Path) -> None:
    found = problems(
        tmp_path, {"projects": {"P1": {"aliases": ["Shared"]}, "P2": {"aliases": ["shared"]}}}
    )
    assert any(p.startswith("projects.P2:") for p in found)


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), (12, 12)]
)
def test_durations(tmp_path: Path, text: object, seconds: float) -> None:
    loaded = load_text(tmp_path, yaml.safe_dump({"site": {"session_idle_timeout": text}}))
    assert loaded.site.session_idle_timeout == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("512MiB", 512 * 2**20), ("2GiB", 2 * 2**30), ("1GB", 10**9)]
)
def test_sizes(tmp_path: Path, text: str, size: int) -> None:
    loaded = load_text(tmp_path, yaml.safe_dump({"site": {"min_free_disk": text}}))
    assert loaded.site.min_free_disk == size


def test_workers_default_to_one_per_core_and_bad_values_are_named(tmp_path: Path) -> None:
    import os

    assert load_text(tmp_path, "site: {data_dir: d}\n").workers == min(os.cpu_count() or 1, 32)
    assert load_text(tmp_path, "site: {data_dir: d}\nworkers: 3\n").workers == 3
    for bad in ("0", "many", "true", "99"):
        with pytest.raises(config.ConfigError) as caught:
            load_text(tmp_path, f"site: {{data_dir: d}}\nworkers: {bad}\n")
        assert any(p.startswith("workers:") for p in caught.value.problems), caught.value.problems


def test_users_may_live_in_their_own_file(tmp_path: Path) -> None:
    digest = "a" * 64
    (tmp_path / "users.yaml").write_text(f"alice: {{token_sha256: {digest}}}\n")
    loaded = load_text(tmp_path, "site: {data_dir: d}\nusers: users.yaml\n")
    assert loaded.users["alice"].token_sha256 == digest
    # Not written yet (no `xnatd users add` so far): no users, not an error.
    assert load_text(tmp_path, "site: {data_dir: d}\nusers: missing.yaml\n").users == {}
    (tmp_path / "broken.yaml").write_text("alice: [unclosed\n")
    with pytest.raises(config.ConfigError, match=r"broken\.yaml"):
        load_text(tmp_path, "site: {data_dir: d}\nusers: broken.yaml\n")


def test_association_limits_default_and_bad_values_are_named(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "site: {data_dir: d}\n").associations
    assert (loaded.artim_timeout, loaded.max_open, loaded.max_per_peer) == (10.0, 64, 32)
    set_ = load_text(
        tmp_path, "associations: {artim_timeout: 500ms, max_open: 8, max_per_peer: 2}\n"
    ).associations
    assert (set_.artim_timeout, set_.max_open, set_.max_per_peer) == (0.5, 8, 2)
    found = problems(
        tmp_path,
        {"associations": {"artim_timeout": "0s", "max_open": 0, "max_per_peer": "x", "y": 1}},
    )
    assert sorted(p.split(":")[0] for p in found) == [
        "associations.artim_timeout",
        "associations.max_open",
        "associations.max_per_peer",
        "associations.y",
    ]
    found = problems(tmp_path, {"associations": {"max_open": 4, "max_per_peer": 5}})
    assert found == ["associations.max_per_peer: 5 is above associations.max_open"]
