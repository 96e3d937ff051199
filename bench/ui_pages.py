"""How fast the review pages answer (issue 21): the prearchive page with 1,000 sessions
(target: under 300 ms on the server) and a 500-image scan's page with every picture it
shows, once the pictures are cached (target: under 1 s).

The index is filled in-process through the intake (one small image per session, and
one session of 500 images in one scan), then the pages are fetched over HTTP from the
daemon's own web server, signed in as an owner.

    python3 bench/ui_pages.py [--sessions 1000] [--images 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
from common import ROOT
from dicomgen import SeriesSpec, StudySpec, write_study

sys.path.insert(0, str(ROOT / "tests" / "ui"))
from uisite import signed_in, ui_site


def timed(fetch, runs: int) -> float:
    """The median of ``runs`` calls, in milliseconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fetch()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    # The request log would print a line per picture: only warnings here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as scratch:
        work = Path(scratch)
        ui = ui_site(work)
        try:
            started = time.perf_counter()
            for number in range(args.sessions - 1):
                study = StudySpec(
                    f"s{number}", patient_id=f"P{number}", series=[SeriesSpec(1, instances=1)]
                )
                paths = write_study(study, work / "send" / str(number))
                ui.site.receive(paths, project="DEMO")
            big = StudySpec(
                "big",
                patient_id="BIG",
                series=[SeriesSpec(1, instances=args.images, rows=64, columns=64)],
            )
            ui.site.receive(write_study(big, work / "send" / "big"), project="DEMO")
            filled = time.perf_counter() - started
            client = signed_in(ui, "alice")
            listing = client.get("/ui/prearchive")
            rows = listing.text.count("<tr>") - 1
            list_ms = timed(lambda: client.get("/ui/prearchive").raise_for_status(), args.runs)
            session = max(ui.site.prearchive(), key=lambda s: s.files)
            url = f"/ui/prearchive/{session.name}"

            def whole_page() -> int:
                page = client.get(url)
                page.raise_for_status()
                images = re.findall(r'src="([^"]+/picture/[^"]+)"', page.text)
                for image in images:
                    client.get(image.replace("&amp;", "&")).raise_for_status()
                return len(images)

            started = time.perf_counter()
            shown = whole_page()  # makes the pictures
            first_ms = (time.perf_counter() - started) * 1000
            cached_ms = timed(whole_page, args.runs)
            html_ms = timed(lambda: client.get(url).raise_for_status(), args.runs)
        finally:
            ui.close()
    print(f"filled {args.sessions} sessions in {filled:.1f} s")
    print(f"prearchive page, {rows} sessions: {list_ms:.0f} ms (median of {args.runs})")
    print(
        f"{args.images}-image scan page: HTML {html_ms:.0f} ms; with its {shown} pictures "
        f"{cached_ms:.0f} ms cached (median of {args.runs}), {first_ms:.0f} ms when made"
    )


if __name__ == "__main__":
    main()
