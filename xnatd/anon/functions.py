"""DicomEdit 6's built-in functions, by name (reference 6.2).

Each entry: the function, and how many arguments it takes. Functions receive the
evaluation context and their unevaluated arguments, because several take tag paths
(``isPresent[(0010,0010)]``, ``delete["(0010,0010)"]``) rather than values.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from xnatd.anon import alter_pixels
from xnatd.anon.context import Context
from xnatd.anon.dates import shift_date, shift_datetime
from xnatd.anon.language import Call, ListValue, ScriptError, ScriptFailed, Value, Variable
from xnatd.anon.tagpath import TagPath

DOB_LIMIT_DAYS = round(365.24 * 89)  # XNAT's 89 years
PATIENT_AGE, PATIENT_BIRTH_DATE, STUDY_DATE = 0x00101010, 0x00100030, 0x00080020


def hash_uid(value: str) -> str:
    """XNAT's hashUID: SHA-1 of the UTF-8 text, first 16 bytes as a version 5 UUID, under 2.25."""
    digest = bytearray(hashlib.sha1(value.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return "2.25." + str(int.from_bytes(digest, "big"))


def new_uid() -> str:
    """A new random UID under 2.25 (XNAT's newUID[])."""
    return "2.25." + str(uuid.uuid4().int)


def _java_format(pattern: str, args: list[str]) -> str:
    """MessageFormat's ``{n}`` placeholders and ``''`` quoting."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            end = pattern.find("'", i + 1)
            if end == i + 1:
                out.append("'")
                i += 2
                continue
            if end == -1:
                end = len(pattern)
            out.append(pattern[i + 1 : end])
            i = end + 1
        elif char == "{" and (close := pattern.find("}", i)) != -1:
            index = pattern[i + 1 : close].split(",")[0].strip()
            out.append(args[int(index)] if index.isdigit() and int(index) < len(args) else "")
            i = close + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _text(ctx: Context, args: tuple[Value, ...], index: int, default: str | None = None) -> str:
    value = ctx.text(args[index]) if index < len(args) else default
    return "" if value is None else value


def _int(ctx: Context, args: tuple[Value, ...], index: int) -> int:
    text = _text(ctx, args, index).strip()
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


# -- the functions ----------------------------------------------------------------------
def f_concatenate(ctx: Context, args: tuple[Value, ...]) -> str:
    """concatenate[a, b, ...]: the texts joined."""
    return "".join(_text(ctx, args, i) for i in range(len(args)))


def f_format(ctx: Context, args: tuple[Value, ...]) -> str:
    """format[pattern, args...]: Java's MessageFormat-style ``{0}`` substitution."""
    return _java_format(_text(ctx, args, 0), [_text(ctx, args, i) for i in range(1, len(args))])


def f_substring(ctx: Context, args: tuple[Value, ...]) -> str:
    """substring[text, begin(, end)]: characters begin to end (exclusive)."""
    text = _text(ctx, args, 0)
    begin = _int(ctx, args, 1)
    end = _int(ctx, args, 2) if len(args) > 2 else len(text)
    if not 0 <= begin <= end <= len(text):
        raise ValueError(f"substring[{text!r}, {begin}, {end}] is out of range")
    return text[begin:end]


def f_replace(ctx: Context, args: tuple[Value, ...]) -> str:
    """replace[text, old, new]: every occurrence of old replaced."""
    return _text(ctx, args, 0).replace(_text(ctx, args, 1), _text(ctx, args, 2))


def f_match(ctx: Context, args: tuple[Value, ...]) -> str | None:
    """Group n of the first place the pattern is found in the value (Java's find());
    nothing when it is not found or the value is missing."""
    value = ctx.text(args[0])
    if value is None:
        return None
    match = re.search(_text(ctx, args, 1), value)
    return match.group(_int(ctx, args, 2)) if match else None


def _case(change: Callable[[str], str], name: str) -> Callable[[Context, tuple[Value, ...]], str]:
    def function(ctx: Context, args: tuple[Value, ...]) -> str:
        value = ctx.text(args[0])
        if value is None:  # DicomEdit: "Error evaluating lowercase"
            raise ValueError(f"{args[0]} has no value to change to {name}")
        return change(value)

    return function


def f_ismatch(ctx: Context, args: tuple[Value, ...]) -> bool:
    """ismatch[text, regex]: whether the whole text matches."""
    return re.fullmatch(_text(ctx, args, 1), _text(ctx, args, 0)) is not None


def f_hash_uid(ctx: Context, args: tuple[Value, ...]) -> str | None:
    """hashUID[uid]: XNAT's SHA-1 based replacement UID under 2.25."""
    value = ctx.text(args[0])
    return hash_uid(value) if value else value


def f_hash_uid_list(ctx: Context, args: tuple[Value, ...]) -> None:
    """Hash every UID, multi-valued ones included, at each tag path, in place."""
    for path in (p for arg in args for p in ctx.paths(arg)):
        for dataset, tag in ctx.find(path):
            values = [v for v in ctx.read(dataset, tag).split("\\") if v]
            ctx.write(dataset, tag, "\\".join(hash_uid(v) for v in values))


def f_map_referenced_uids(ctx: Context, args: tuple[Value, ...]) -> None:
    """Give each UID at the tag paths a new random UID under root, the same one each time
    it appears within the run."""
    root = _text(ctx, args, 0).rstrip(".")
    for path in (p for arg in args[1:] for p in ctx.paths(arg)):
        for dataset, tag in ctx.find(path):
            old = ctx.read(dataset, tag)
            if not old:
                continue
            if old not in ctx.uid_map:
                ctx.uid_map[old] = f"{root}.{uuid.uuid4().int}"[:64].rstrip(".")
            ctx.write(dataset, tag, ctx.uid_map[old])


def f_map_uid(ctx: Context, args: tuple[Value, ...]) -> str | None:
    """The UID under another root: the root, then the decimal part of its hashUID, so a
    UID maps to the same new one in every file, session and run."""
    value = ctx.text(args[0])
    if not value:
        return value
    root = _text(ctx, args, 1).strip().rstrip(".")
    if root and not re.fullmatch(r"[0-9]+(\.[0-9]+)*", root):
        raise ValueError(f"root {root!r} is not a UID prefix")
    mapped = f"{root}.{hash_uid(value)[len('2.25.') :]}" if root else hash_uid(value)
    if len(mapped) > 64:
        raise ValueError(f"root {root!r} makes a UID of {len(mapped)} characters (64 at most)")
    return mapped


def f_lookup(ctx: Context, args: tuple[Value, ...]) -> str | None:
    """The value the lookup table gives ``key-type/key``; no value when the key is absent."""
    if ctx.lookup is None:
        raise ValueError("no lookup table was given for this script")
    key = ctx.text(args[1])
    return None if key is None else ctx.lookup.get(f"{_text(ctx, args, 0)}/{key}")


def f_get_url(ctx: Context, args: tuple[Value, ...]) -> str:
    """getURL[url]: the body of a GET, stripped (10 s timeout)."""
    url = _text(ctx, args, 0)
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8", "replace").strip()


def f_url_encode(ctx: Context, args: tuple[Value, ...]) -> str:
    """urlEncode[text]: the text form-encoded."""
    return urllib.parse.quote_plus(_text(ctx, args, 0))


def f_retain_private_tags(ctx: Context, args: tuple[Value, ...]) -> None:
    """Remove every private element except those named, with what they hold, the
    private sequences they lie in and the creators of those blocks."""
    keep: set[tuple[int, int]] = set()
    whole: set[tuple[int, int]] = set()
    for path in (p for arg in args for p in ctx.paths(arg)):
        if path.steps[-1].creator is None:
            raise ValueError(f"{path} is not a private element named through its creator")
        for chain in path.chains(ctx.dataset):
            whole.add((id(chain[-1][0]), chain[-1][1]))
            for dataset, tag in chain:
                keep.add((id(dataset), tag))
                if (tag >> 16) % 2 == 1 and tag & 0xFFFF > 0xFF:
                    keep.add((id(dataset), (tag & 0xFFFF0000) | ((tag >> 8) & 0xFF)))
    ctx.remove_private(
        lambda dataset, tag: (id(dataset), tag) in keep,
        lambda dataset, tag: (id(dataset), tag) in whole,
    )


def f_remove_tags(ctx: Context, args: tuple[Value, ...]) -> None:
    """removeTags[paths...]: delete every element the paths name."""
    for path in (p for arg in args for p in ctx.paths(arg)):
        ctx.delete(path)


def f_delete(ctx: Context, args: tuple[Value, ...]) -> None:
    """delete[path]: delete the elements a path given as a value names."""
    ctx.delete(ctx.path(args[0]))


def f_set(ctx: Context, args: tuple[Value, ...]) -> None:
    """set[path, value]: assign through a path given as a value."""
    ctx.assign(ctx.path(args[0]), ctx.value(args[1]))


def f_is_present(ctx: Context, args: tuple[Value, ...]) -> bool:
    """Whether every path names an element (or, ending in [n], a sequence item)."""
    return all(ctx.find(ctx.path(arg)) for arg in args)


def f_shift_date(ctx: Context, args: tuple[Value, ...]) -> str:
    """shiftDateByIncrement[date, days]: a DA value moved by days."""
    return shift_date(_text(ctx, args, 0), _int(ctx, args, 1))


def f_shift_datetime(ctx: Context, args: tuple[Value, ...]) -> str:
    """shiftDateTimeByIncrement[dt, n(, units)]: a DT value moved."""
    units = _text(ctx, args, 2) if len(args) > 2 else "seconds"
    return shift_datetime(_text(ctx, args, 0), _int(ctx, args, 1), units)


def f_shift_datetime_list(ctx: Context, args: tuple[Value, ...]) -> list[str] | None:
    """Given tag paths (a list of them, or a variable holding one), shift each element's
    value in place, as DicomEdit does; given values, return them shifted."""
    units = _text(ctx, args, 2) if len(args) > 2 else "seconds"
    if _names_paths(ctx, args[0]):
        for path in ctx.paths(args[0]):
            for dataset, tag in ctx.find(path):
                values = [v for v in ctx.read(dataset, tag).split("\\") if v]
                shifted = [shift_datetime(v, _int(ctx, args, 1), units) for v in values]
                ctx.write(dataset, tag, "\\".join(shifted))
        return None
    value = ctx.value(args[0])
    values = value if isinstance(value, list) else str(value or "").split("\\")
    return [shift_datetime(v, _int(ctx, args, 1), units) for v in values if v]


def _names_paths(ctx: Context, node: Value) -> bool:
    from xnatd.anon.tagpath import TagPath

    if isinstance(node, Variable):
        node = ctx.variables.get(node.name)  # type: ignore[assignment]
    if isinstance(node, TagPath):
        return True
    return isinstance(node, ListValue) and any(isinstance(i, TagPath) for i in node.items)


def f_shift_datetime_sequence(ctx: Context, args: tuple[Value, ...]) -> None:
    """shiftDateTimeSequenceByIncrement[seconds, paths...]: every DT value the paths
    name moved, in place."""
    seconds = _int(ctx, args, 0)
    for path in (p for arg in args[1:] for p in ctx.paths(arg)):
        for dataset, tag in ctx.find(path):
            value = ctx.read(dataset, tag)
            if value:
                ctx.write(dataset, tag, shift_datetime(value, seconds, "seconds"))


def f_normalize_string(ctx: Context, args: tuple[Value, ...]) -> str:
    """normalizeString[text(, replacement)]: non-ASCII characters replaced."""
    replacement = _text(ctx, args, 1) if len(args) > 1 else "_"
    return re.sub(r"[^\x00-\x7f]", lambda _: replacement, _text(ctx, args, 0))


def f_scale_age_and_dob(ctx: Context, args: tuple[Value, ...]) -> None:
    """XNAT's rule for patients over 89. With a birth date and a study date: a patient
    over 89 at the study gets a birth date that makes them turn 89 the day after it, and
    every age becomes 089Y; a birth date without a study date leaves everything. With
    no birth date, every age over 89 years (at any depth) becomes 089Y."""
    import datetime as dt

    birth, study = ctx.get_tag(PATIENT_BIRTH_DATE), ctx.get_tag(STUDY_DATE)
    if birth and not study:
        return
    if birth and study:
        born, seen = shift_date(birth[:8], 0), shift_date(study[:8], 0)
        days = (
            dt.date(int(seen[:4]), int(seen[4:6]), int(seen[6:8]))
            - dt.date(int(born[:4]), int(born[4:6]), int(born[6:8]))
        ).days
        if days - DOB_LIMIT_DAYS <= 0:
            return
        for dataset, tag in ctx.everywhere(PATIENT_BIRTH_DATE):
            value = ctx.read(dataset, tag)
            if value:
                ctx.write(dataset, tag, shift_date(value, days - DOB_LIMIT_DAYS))
        for dataset, tag in ctx.everywhere(PATIENT_AGE):
            ctx.write(dataset, tag, "089Y")
        return
    for dataset, tag in ctx.everywhere(PATIENT_AGE):
        age = ctx.read(dataset, tag).strip()
        if not age:
            continue
        if not re.fullmatch(r"\d{3}[DWMY]", age):
            raise ValueError(f"Error parsing age {age!r} (nnnD, nnnW, nnnM or nnnY)")
        if age.endswith("Y") and int(age[:3]) > 89:
            ctx.write(dataset, tag, "089Y")


def f_collect_values(ctx: Context, args: tuple[Value, ...]) -> list[str]:
    """The values of every element each tag path names (at any item, through wildcards),
    paths given directly, in lists (nested ones too) or in variables holding lists."""
    from xnatd.anon.tagpath import TagPath

    values: list[str] = []

    def collect(node: Value) -> None:
        if isinstance(node, Variable) and isinstance(ctx.variables.get(node.name), ListValue):
            node = ctx.variables[node.name]
        if isinstance(node, ListValue):
            for item in node.items:
                collect(item)
        elif isinstance(node, TagPath):
            values.extend(ctx.read(dataset, tag) for dataset, tag in ctx.find(node))
        else:
            value = ctx.value(node)
            if isinstance(value, list):
                values.extend(str(v) for v in value)
            else:
                values.append("" if value is None else str(value))

    for arg in args:
        collect(arg)
    return values


def f_blank_values(ctx: Context, args: tuple[Value, ...]) -> None:
    """Blank every element holding one of the values: given as values, or as tag paths
    (each element a path names gives its value)."""
    from xnatd.anon.tagpath import TagPath

    known: set[str] = set()

    def collect(node: Value) -> None:
        if isinstance(node, Variable) and isinstance(ctx.variables.get(node.name), ListValue):
            node = ctx.variables[node.name]
        if isinstance(node, ListValue):
            for item in node.items:
                collect(item)
        elif isinstance(node, TagPath):
            known.update(ctx.read(dataset, tag) for dataset, tag in ctx.find(node))
        else:
            value = ctx.value(node)
            known.update(str(v) for v in value) if isinstance(value, list) else known.add(
                str(value or "")
            )

    for arg in args:
        collect(arg)
    ctx.blank_known_values(known - {""})


def f_blank_known_phi(ctx: Context, args: tuple[Value, ...]) -> None:
    """``blankKnownPHI[paths...]``: the older spelling of
    ``blankValues[collectValues[paths...]]`` (XNAT's XRT runs the same cases on both)."""
    ctx.blank_known_values(set(f_collect_values(ctx, args)) - {""})


def f_alter_pixels(ctx: Context, args: tuple[Value, ...]) -> None:
    """Blank a rectangle of every frame (left/top inclusive, right/bottom exclusive)."""

    try:
        box = alter_pixels.parse_rectangle(_text(ctx, args, 0), _text(ctx, args, 1))
        value = alter_pixels.parse_fill(_text(ctx, args, 2), _text(ctx, args, 3))
        alter_pixels.blank_rectangle(ctx.dataset, box, value)
    except alter_pixels.PixelEditError as exc:
        raise ScriptFailed(str(exc)) from exc


def f_reject(ctx: Context, args: tuple[Value, ...]) -> None:
    """reject[]: the file is not kept."""
    ctx.reject()


FUNCTIONS: dict[str, tuple[Callable[[Context, tuple[Value, ...]], Any], int, int | None]] = {
    "concatenate": (f_concatenate, 1, None),
    "format": (f_format, 1, None),
    "lowercase": (_case(str.lower, "lower case"), 1, 1),
    "uppercase": (_case(str.upper, "upper case"), 1, 1),
    "substring": (f_substring, 2, 3),
    "replace": (f_replace, 3, 3),
    "match": (f_match, 3, 3),
    "ismatch": (f_ismatch, 2, 2),
    "hashUID": (f_hash_uid, 1, 1),
    "hashUIDList": (f_hash_uid_list, 1, None),
    "newUID": (lambda c, a: new_uid(), 0, 0),
    "mapReferencedUIDs": (f_map_referenced_uids, 2, None),
    "mapUID": (f_map_uid, 2, 2),
    "lookup": (f_lookup, 2, 2),
    "getURL": (f_get_url, 1, 1),
    "urlEncode": (f_url_encode, 1, 1),
    "retainPrivateTags": (f_retain_private_tags, 0, None),
    "removeTags": (f_remove_tags, 1, None),
    "delete": (f_delete, 1, 1),
    "set": (f_set, 2, 2),
    "isPresent": (f_is_present, 1, None),
    "shiftDateByIncrement": (f_shift_date, 2, 2),
    "shiftDateTimeByIncrement": (f_shift_datetime, 2, 3),
    "shiftDateTimeListByIncrement": (f_shift_datetime_list, 2, 3),
    "shiftDateTimeSequenceByIncrement": (f_shift_datetime_sequence, 2, None),
    "normalizeString": (f_normalize_string, 1, 2),
    "scalePatientAgeAndDobFromStudyDate": (f_scale_age_and_dob, 0, 0),
    "collectValues": (f_collect_values, 0, None),
    "blankValues": (f_blank_values, 0, None),
    "blankKnownPHI": (f_blank_known_phi, 0, None),
    "reject": (f_reject, 0, 0),
    "alterPixels": (f_alter_pixels, 4, 4),
    "true": (lambda c, a: True, 0, None),  # DicomEdit ignores their arguments
    "false": (lambda c, a: False, 0, None),
}


def check_call(call: Call) -> None:
    """Refuse, at load, a function that does not exist or gets the wrong number of arguments.

    Raises:
        ScriptError: naming the line.
    """

    entry = FUNCTIONS.get(call.name)
    if entry is None:
        raise ScriptError(f"unknown function {call.name}[]", call.line, 1)
    _, low, high = entry
    if call.name == "retainPrivateTags":
        for arg in call.args:
            if isinstance(arg, TagPath) and arg.steps[-1].creator is None:
                raise ScriptError(
                    f"retainPrivateTags[] keeps private elements; {arg} is not one "
                    "(name it as (gggg,{Creator}ee))",
                    call.line,
                    1,
                )
    if len(call.args) < low or (high is not None and len(call.args) > high):
        expected = (
            f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
        )
        raise ScriptError(
            f"{call.name}[] takes {expected} arguments, not {len(call.args)}", call.line, 1
        )
