"""Files in and out without a scanner: ``import`` and ``send``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from xnatd.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    actor,
    load_config,
    open_store_for_writing,
    pipeline_of,
)


def cmd_import(args: argparse.Namespace) -> int:
    """``xnatd import``: import a zip, tar, folder or file, all or nothing; 1 when it
    failed, 130 when interrupted (nothing is imported either way).
    """
    from xnatd.intake.importer import ImportFailed, ImportRequest, Interruption

    config = load_config(args)
    with open_store_for_writing(config) as store:
        importer = pipeline_of(config, store).importer
        request = ImportRequest(
            path=args.path,
            project=args.project,
            subject=args.subject,
            session=args.session,
            archive=args.archive,
            ignore_unparsable=args.ignore_unparsable,
            actor=actor(),
            interruption=(interruption := Interruption()),
        )
        previous = signal.signal(signal.SIGINT, lambda *_: interruption.interrupt())
        try:
            summary = importer.run(request, quiet=args.json)
        except ImportFailed as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("xnatd: import interrupted; nothing was imported", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps(summary.__dict__, indent=2))
        return EXIT_OK
    created, merged = len(summary.sessions_created), len(summary.sessions_merged)
    print(
        f"imported {summary.files} files ({summary.bytes / 1e6:.1f} MB) in "
        f"{summary.seconds:.1f} s: {created} sessions created, {merged} merged"
        + (f", archived as {', '.join(summary.archived)}" if summary.archived else "")
    )
    for name in summary.sessions_created + summary.sessions_merged:
        print(f"  {name}")
    for skipped in summary.skipped:
        print(f"  skipped {skipped['entry']}: {skipped['reason']}")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    """``xnatd send``: C-STORE every DICOM file of a folder or archive to a receiver;
    1 when any failed.
    """
    import shutil
    import tempfile

    from xnatd.intake.staging import HostileArchive
    from xnatd.scp.hooks import UnsupportedPynetdicom
    from xnatd.sender import SendError, Target, collect, send
    from xnatd.tls import TLSError, client_context

    tls = None
    if args.tls or args.cert or args.key or args.ca:
        try:
            tls = client_context(args.ca, args.cert, args.key)
        except TLSError as exc:
            print(f"xnatd: --{exc.key}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    staging = Path(tempfile.mkdtemp(prefix="xnatd-send-"))
    try:
        try:
            files = collect(args.path, staging)
        except (HostileArchive, OSError) as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
        try:
            summary = send(
                files,
                Target(args.host, args.port, args.aec, args.aet, tls),
                associations=max(1, args.associations),
                retries=args.retries,
                quiet=args.json,
            )
        except (SendError, UnsupportedPynetdicom) as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {
        "sent": summary.sent,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "statuses": dict(summary.statuses),
        "retries": summary.retries,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary.statuses.items()))
        print(
            f"sent {summary.sent}, failed {len(summary.failed)}, skipped {len(summary.skipped)}"
            f" ({statuses or 'no responses'}; {summary.retries} retries)"
        )
        for failure in summary.failed:
            print(f"  failed {failure['entry']}: {failure['status']} {failure['reason']}")
        for skipped in summary.skipped:
            print(f"  skipped {skipped['entry']}: {skipped['reason']}")
    return EXIT_OK if not summary.failed else EXIT_FAILED
