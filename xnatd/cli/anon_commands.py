"""The ``anon`` commands: check a DicomEdit script, apply it to files."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from xnatd.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    UsageError,
)

if TYPE_CHECKING:
    from xnatd.anon.script import Script


def load_script(args: argparse.Namespace) -> Script:
    """The script named on the command line, with its --lookup table.

    Raises:
        ScriptError, LookupTableError, OSError: naming the file.
    """
    from xnatd.anon.lookup import load_lookup_table
    from xnatd.anon.script import ScriptError, load

    script = load(args.script)
    if args.lookup is not None:
        return script.with_lookup(load_lookup_table(args.lookup))
    if "lookup" in script.functions:
        raise ScriptError(f"{args.script} calls lookup[]; give its table with --lookup FILE")
    return script


def cmd_anon_check(args: argparse.Namespace) -> int:
    """``xnatd anon check``: parse a script (and its lookup table); 0 when it parses, 2 not."""
    from xnatd.anon.lookup import LookupTableError
    from xnatd.anon.script import ScriptError

    try:
        script = load_script(args)
    except (ScriptError, LookupTableError, OSError) as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.script}: ok ({len(script.statements)} statements, version {script.version})")
    return EXIT_OK


def cmd_anon_apply(args: argparse.Namespace) -> int:
    """``xnatd anon apply``: run a script on one file and write the result; 0 written,
    3 rejected by the script, 2 when the script or the file failed.
    """
    from xnatd.anon.apply import apply_to_bytes
    from xnatd.anon.engine import ScriptFailed
    from xnatd.anon.lookup import LookupTableError
    from xnatd.anon.script import ScriptError

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {item!r} is not NAME=VALUE")
        variables[name] = value
    try:
        script = load_script(args)
        result = apply_to_bytes(script, args.input.read_bytes(), variables)
    except (ScriptError, LookupTableError, ScriptFailed, OSError) as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result is None:
        print(f"xnatd: {args.input}: rejected by {args.script}", file=sys.stderr)
        return EXIT_REJECTED
    args.output.write_bytes(result)
    return EXIT_OK
