"""The ``xnatd`` command line: parses arguments and calls one function per command.

Exit codes: 0 done, 1 refused or failed, 2 bad usage or configuration (and 3: ``anon
apply``'s script rejected the file; 130: an import interrupted). A command returns its
code; this module maps the errors commands raise. Errors go to stderr; ``--json`` gives
machine output.

One module per command group; ``common`` holds what they share."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xnatd import logs, process
from xnatd.cli.common import EXIT_FAILED, EXIT_USAGE, UsageError
from xnatd.cli.parser import build_parser
from xnatd.config import ConfigError
from xnatd.operations import Refused
from xnatd.store import DataDirError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see above)."""
    process.configure()
    args = build_parser().parse_args(argv)
    if args.command != "run":
        # Commands print their results on stdout; events (warnings up) go to stderr.
        logs.configure("console", "warning")
    try:
        return args.func(args)
    except ConfigError as exc:
        if len(exc.problems) == 1:
            print(f"xnatd: configuration {exc.path}: {exc.problems[0]}", file=sys.stderr)
        else:
            print(f"xnatd: configuration {exc.path} is not valid:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except DataDirError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
