"""Running a parsed DicomEdit 6 script over one dataset.

Takes a parsed script, a pydicom dataset and variables; never reads configuration or
disk. Values are text (multi-valued joined by ``\\``) or lists; a missing element's
value is None. The work is ``context.Context``'s; this module gives it the function
table and the grammar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

from xnatd.anon.context import Context, Rejected, Result
from xnatd.anon.functions import FUNCTIONS
from xnatd.anon.language import Script, ScriptFailed
from xnatd.anon.script import parse_path_argument

__all__ = ["Context", "Result", "ScriptFailed", "run"]


def run(script: Script, dataset: Dataset, variables: Mapping[str, Any] | None = None) -> Result:
    """Apply a script to a dataset in place.

    Raises:
        ScriptFailed: the script could not be applied (the file should not be kept as is).
    """
    context = Context(
        dataset,
        variables or {},
        script.lookup,
        functions=FUNCTIONS,
        parse_path=parse_path_argument,
    )
    with contextlib.suppress(Rejected):
        context.run(script.statements)
    return context.result
