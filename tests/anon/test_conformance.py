"""DicomEdit 6 conformance: XNAT's own cases, run through ``xnatd.anon`` on whole files.

Each file in ``conformance/`` holds the cases of one source test class (DicomEdit 6's
unit tests in ``danielmarcus/xnat-monorepo``, ``libs/dicom-edit6/src/test/java/...``)
or one group of XNAT's integration scripts (``NrgXnat/xnat-rest-tests``,
``src/test/resources/data/anon_scripts/DE_6/``). The scripts and expected values are
theirs (facts); the data sets are described in YAML and built here with pydicom.

A case::

    - name: what it shows
      script: |                     # the DicomEdit 6 script
        (0008,0080) := "New"
      input:                        # the data set: path -> value
        (0008,0080): Old            # text; a list of texts is multi-valued
        (0008,1032):                # a list of mappings is a sequence
          - {(0010,0010): s0}
        (0019,1010): {vr: LO, value: x}   # an explicit VR
        (0044,0001): {vr: UN, hex: 4142}  # bytes
      variables: {project: P}       # XNAT's variables, when the case uses them
      expect:                       # path -> text, or null for "absent"
        (0008,0080): New
        (0008,1032)[0]/(0010,0010): s0
        (0008,0018): {matches: '2\\.25\\.\\d+'}
        (0010,0010): {vr: PN, value: X}
        (0008,103E): {empty: true}  # absent, or present without a value
      error: load                   # refused when the script is loaded
      error: apply                  # refused at load or the file fails at apply
      rejected: true                # reject[] dropped the file
      echoes: [text, ...]           # what echo printed
      parses: true                  # a grammar case: the script loads
      lookup: |                     # the table lookup[] reads
        pn/Doe^John = SUBJ1
      scripts:                      # instead of script (and lookup): several, in order
        - {script: ..., lookup: ...}

Paths in ``input`` and ``expect`` are concrete: ``(gggg,eeee)``, ``[n]`` item indexes,
group 0002 meaning the file meta header.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from xnatd.anon.apply import Parsed, anonymize
from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.lookup import parse_lookup_table
from xnatd.anon.script import Script, ScriptError, parse

HERE = Path(__file__).with_name("conformance")
_PATH_STEP = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)(?:\[(\d+)\])?")
SOP_CLASS, SOP_INSTANCE = "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5.6.7.8.9"


def _cases() -> list[Any]:
    params = []
    for path in sorted(HERE.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in document["cases"]:
            params.append(pytest.param(case, id=f"{path.stem}::{case['name']}"))
    return params


def _tag(text: str) -> int:
    match = _PATH_STEP.fullmatch(text.strip())
    assert match is not None and match.group(3) is None, f"not a tag: {text}"
    return int(match.group(1) + match.group(2), 16)


def _vr(tag: int, value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "SQ"
    if (tag >> 16) % 2 == 1:
        return "LO"
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "LO"


def _fill(dataset: Dataset, spec: dict[str, Any]) -> None:
    for key, raw in spec.items():
        tag = _tag(key)
        vr, value = (raw["vr"], raw.get("value")) if isinstance(raw, dict) else (None, raw)
        if isinstance(raw, dict) and "hex" in raw:
            value = bytes.fromhex(raw["hex"])
        vr = vr or _vr(tag, value)
        if vr == "SQ":
            items = []
            for item_spec in value or []:
                item = Dataset()
                _fill(item, item_spec)
                items.append(item)
            value = Sequence(items)
        elif isinstance(value, list):
            value = [str(v) for v in value]
        elif value is not None and not isinstance(value, bytes):
            value = str(value)
        if vr in ("US", "SS", "UL", "SL", "FL", "FD") and value not in (None, ""):
            kind = float if vr in ("FL", "FD") else int
            value = [kind(v) for v in value] if isinstance(value, list) else kind(value)
        dataset.add_new(tag, vr, value)


def build(spec: dict[str, Any]) -> bytes:
    """A Part 10 file (explicit VR little endian) holding the case's data set."""
    dataset = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS
    meta.MediaStorageSOPInstanceUID = SOP_INSTANCE
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    body = {k: v for k, v in (spec or {}).items() if not k.startswith("(0002,")}
    _fill(dataset, body)
    _fill(meta, {k: v for k, v in (spec or {}).items() if k.startswith("(0002,")})
    dataset.file_meta = meta
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _text(element: Any) -> str:
    if element.VR == "SQ":
        return ""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    if isinstance(value, pydicom.multival.MultiValue | list):
        return "\\".join(_number(v) for v in value)
    return _number(value)


def _number(value: Any) -> str:
    """A value as dcm4che prints it: a whole float without ``.0`` (FD 30.0 is "30"),
    an AT value as eight hex digits."""
    if isinstance(value, BaseTag):
        return f"{int(value):08X}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def find(dataset: Dataset, path: str) -> Any:
    """The element at a concrete path, or None."""
    steps = path.strip().split("/")
    current: Any = dataset.file_meta if path.startswith("(0002,") else dataset
    for position, step in enumerate(steps):
        match = _PATH_STEP.fullmatch(step.strip())
        assert match is not None, f"not a concrete path: {path}"
        tag = int(match.group(1) + match.group(2), 16)
        if tag not in current:
            return None
        element = current[tag]
        if position == len(steps) - 1:
            return element
        index = int(match.group(3) or 0)
        items = element.value or []
        if index >= len(items):
            return None
        current = items[index]
    return None


def _load(case: dict[str, Any]) -> list[Script]:
    """The case's script, or its scripts in the order they run (site, then project)."""
    loaded = []
    for entry in case.get("scripts") or [case]:
        script = parse(entry["script"])
        if entry.get("lookup") is not None:
            script = script.with_lookup(parse_lookup_table(entry["lookup"]))
        loaded.append(script)
    return loaded


# A script may write any text into Specific Character Set (XNAT's MultipleElseIf.das
# writes "if"); pydicom warns and uses its default encoding, as XNAT's dcm4che does.
@pytest.mark.filterwarnings("ignore:Unknown encoding:UserWarning")
@pytest.mark.parametrize("case", _cases())
def test_case(case: dict[str, Any]) -> None:
    expected_error = case.get("error")
    try:
        scripts = _load(case)
    except ScriptError:
        if expected_error in ("load", "apply"):
            return
        raise
    assert expected_error != "load", "the script should have been refused at load"
    if case.get("parses"):
        return
    written: bytes | None = build(case.get("input") or {})
    if case.get("echoes") is not None:
        parsed = Parsed(pydicom.dcmread(io.BytesIO(written)))
        result = run(scripts[0], parsed.dataset, case.get("variables") or {})
        assert result.echoes == case["echoes"]
        return
    try:
        for script in scripts:
            assert written is not None
            parsed = Parsed(pydicom.dcmread(io.BytesIO(written)))
            output = anonymize(script, parsed, case.get("variables") or {})
            assert output is None or isinstance(output, bytes)
            written = output
    except ScriptFailed:
        if expected_error == "apply":
            return
        raise
    assert expected_error is None, "the script should have failed on this file"
    if case.get("rejected"):
        assert written is None
        return
    assert written is not None, "the file was rejected"
    out = pydicom.dcmread(io.BytesIO(written))
    for path, want in (case.get("expect") or {}).items():
        element = find(out, path)
        if want is None:
            assert element is None, f"{path} should be absent, is {_text(element)!r}"
            continue
        if want == {"empty": True}:  # dcm4che reads an empty value as null: either holds
            assert element is None or _text(element) == "", f"{path}: {_text(element)!r}"
            continue
        assert element is not None, f"{path} is missing"
        if isinstance(want, dict):
            if "vr" in want:
                assert want["vr"] == element.VR, f"{path}: VR {element.VR}"
            if "matches" in want:
                assert re.fullmatch(want["matches"], _text(element)), f"{path}: {_text(element)}"
            if "hex" in want:
                assert element.value == bytes.fromhex(want["hex"]), f"{path}: {element.value!r}"
            if "value" in want:
                assert _text(element) == str(want["value"]), f"{path}: {_text(element)!r}"
            if want.get("items") is not None:
                assert len(element.value) == want["items"], f"{path}: {len(element.value)} items"
        else:
            assert _text(element) == str(want), f"{path}: {_text(element)!r} != {want!r}"
