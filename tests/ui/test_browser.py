"""The review pages in a real browser (headless Chromium through Selenium) against a
daemon that received sessions from DCMTK storescu (issue 21).

A site script forgets to replace the patient name, which is ``<script>alert(1)</script>``:
the session is HELD, its header table marks (0010,0010), the name is shown as text and
no alert opens. Screenshots of each page go to ``$XNATD_SCREENSHOTS`` (default
``bench/out/screenshots``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from apiclient import TOKENS
from helpers import Xnatd, storescu_send

SCRIPT = "<script>alert(1)</script>"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(
    os.environ.get("XNATD_SCREENSHOTS", Path(__file__).parents[2] / "bench/out/screenshots")
)
# Replaces the patient ID but forgets the name: the header check holds the session.
FORGETS_NAME = 'version "6.3"\n(0010,0020) := "S01"\n-(0010,0030)\n'
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
WAIT = 30  # seconds, for any page or picture

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def settings_hook(workdir: Path):
    def hook(settings: dict) -> None:
        script = workdir / "site.das"
        script.write_text(FORGETS_NAME)
        settings["site"]["anonymization"] = str(script)
        settings["site"]["phi_check"] = {"headers": "hold"}
        settings["receivers"][0]["default_project"] = "DEMO"
        settings["projects"]["QUAR"] = {"quarantine": True}
        roles = {"alice": {"DEMO": "owner", "QUAR": "owner"},
                 "carol": {"DEMO": "collaborator", "QUAR": "collaborator"}}  # fmt: skip
        settings["users"] = {
            name: {"token_sha256": _sha(TOKENS[name]), "projects": projects}
            for name, projects in roles.items()
        }

    return hook


def study(folder: Path) -> list[Path]:
    """Three scans of one study: CT (grey), MR, and a two-frame RLE colour image."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm"), 1):
        ds = pydicom.dcmread(TEST_FILES / name)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.21"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.21.{number}"
        ds.SeriesNumber = number
        ds.SeriesDescription = f"series {number}"
        ds.PatientName, ds.PatientID = SCRIPT, "HN-4471-90"
        ds.PatientComments = "Project: DEMO Subject: S01 Session: S01_MR"
        paths.append(folder / name)
        ds.save_as(paths[-1])
    return paths


@pytest.fixture
def daemon(make_xnatd, tmp_path: Path, storescu: str) -> Xnatd:
    xnatd = make_xnatd(hook=settings_hook(tmp_path))
    *plain, rle = study(tmp_path / "send")
    for paths, extra in ((plain, []), ([rle], ["--propose-rle"])):
        sent = storescu_send(storescu, xnatd.port, paths, extra=extra)
        assert sent.returncode == 0, sent.stderr
    xnatd.wait_status("HELD")
    return xnatd


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1280,1000",
    ]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> None:
    """The whole page (up to 2,400 pixels high) as SHOTS/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 600), 2400))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def sign_in(driver, xnatd: Xnatd, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{xnatd.http_url}/ui/prearchive")
    assert "/ui/signin" in driver.current_url  # nobody signed in yet
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "token").send_keys(TOKENS[user])
    driver.find_element(By.ID, "signin").click()
    wait_for_element(driver, "who")


def wait_for_element(driver, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def pictures_loaded(driver) -> list[int]:
    """The natural widths of the page's scan pictures, once every one has loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = (
        "const all = Array.from(document.querySelectorAll('img.picture, #shown'));"
        "return all.every(i => i.complete) ? all.map(i => i.naturalWidth) : null;"
    )
    return WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(script))


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def test_review_a_held_session_and_archive_it_accepting_the_findings(daemon, browser) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, daemon, "alice")
    rows = browser.find_element(By.ID, "sessions").text
    assert "HELD" in rows and "S01_MR" in rows and "XNAT" in rows  # received by XNAT
    shot(browser, "prearchive")
    browser.find_element(By.LINK_TEXT, "S01_MR").click()
    wait_for_element(browser, "findings")
    assert "(0010,0010)" in browser.find_element(By.ID, "findings").text
    assert browser.find_element(By.ID, "senders").text == "SCANNER"
    widths = pictures_loaded(browser)
    assert len(widths) == 4 and all(w > 0 for w in widths), widths  # 3 scans + the file
    flagged = browser.find_elements(By.CSS_SELECTOR, "#header tr.flagged")
    assert any(SCRIPT in row.text for row in flagged)  # the name, as text, marked
    assert no_alert(browser)
    shot(browser, "session")
    browser.find_element(By.ID, "accept").click()
    browser.find_element(By.ID, "archive").click()
    wait_for_element(browser, "confirm").click()
    outcome = wait_for_element(browser, "outcome").text
    assert outcome.startswith("Archived as /archive/projects/DEMO/subjects/S01/"), outcome
    browser.find_element(By.ID, "next").click()
    status = wait_for_element(browser, "status").text
    assert status == "active"
    assert all(w > 0 for w in pictures_loaded(browser))
    shot(browser, "archived")
    audit = daemon.cli("audit", "--json").stdout
    assert '"accept_findings"' in audit and "http:alice" in audit


def test_collaborator_sees_no_quarantined_session(daemon, browser) -> None:

    (held,) = daemon.prearchive()
    daemon.cli("prearchive", "move", held["name"], "--to", "QUAR")
    (moved,) = daemon.prearchive()
    daemon.cli("prearchive", "archive", moved["name"], "--accept-findings")
    archived = daemon.cli("sessions", "list", "--json").stdout
    assert '"quarantine"' in archived
    sign_in(browser, daemon, "carol")
    browser.get(f"{daemon.http_url}/ui/archive?project=QUAR")
    table = wait_for_element(browser, "experiments").text
    assert "S01_MR" not in table and "No sessions" in table
    browser.get(f"{daemon.http_url}/ui/prearchive")
    assert "S01_MR" not in wait_for_element(browser, "sessions").text
    shot(browser, "collaborator")


def test_upload_a_zip_watching_the_progress(daemon, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in study(tmp_path / "zip"):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.22"
            ds.PatientComments = "Project: DEMO Subject: S02 Session: S02_UP"
            ds.PatientName = "UPLOAD^TEST"
            ds.save_as(path)
            out.write(path, f"study/{path.name}")
    sign_in(browser, daemon, "alice")
    browser.get(f"{daemon.http_url}/ui/upload")
    browser.find_element(By.ID, "files").send_keys(str(archive))
    browser.find_element(By.ID, "send").click()
    outcome = wait_for_element(browser, "outcome").text
    assert browser.find_element(By.ID, "total").text == "100 %"
    assert browser.find_element(By.ID, "file-0").text == "100 %"
    assert "3 file(s): 1 session(s) created" in outcome, outcome
    shot(browser, "upload")
    browser.find_element(By.PARTIAL_LINK_TEXT, "S02_UP").click()
    assert wait_for_element(browser, "status").text in ("RECEIVING", "BUILDING", "READY", "HELD")
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def test_upload_a_folder(daemon, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    folder = tmp_path / "folder" / "study"
    for path in study(folder):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.23"
        ds.PatientComments = "Project: DEMO Subject: S03 Session: S03_DIR"
        ds.save_as(path)
    sign_in(browser, daemon, "alice")
    browser.get(f"{daemon.http_url}/ui/upload")
    browser.find_element(By.ID, "folder").send_keys(str(folder))
    rows = browser.find_element(By.ID, "progress").text
    assert rows.count("study/") == 3, rows  # each file, with its path in the folder
    browser.find_element(By.ID, "send").click()
    outcome = wait_for_element(browser, "outcome").text
    assert "3 file(s): 1 session(s) created" in outcome, outcome
    assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, "[id^=file-]")] == ["100 %"] * 3
    assert browser.find_element(By.ID, "total").text == "100 %"
