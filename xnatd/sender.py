"""``xnatd send``: the upload assistant, a C-STORE sender for a folder or an archive.

Files are sent as they are (their own transfer syntax, never re-encoded) over K
associations; failed instances are retried; a summary of statuses is returned.
Works against xnatd, DCMTK storescp and Orthanc alike.
"""

from __future__ import annotations

import logging
import ssl
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE, _config, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ

from xnatd.intake.staging import StagedFile, obvious_non_image
from xnatd.progress import Progress
from xnatd.scp import hooks

MAX_CONTEXTS = 128  # presentation contexts one association may propose
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR, whatever its file name


class SendError(Exception):
    """The peer cannot be reached or refuses the association: nothing more is tried."""


@dataclass
class SendSummary:
    """What a send did: files sent, failed and skipped (with why), DIMSE statuses by
    code, retries.
    """

    sent: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    retries: int = 0


@dataclass(frozen=True)
class Target:
    """The receiver to send to, and the calling AE title."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "XNATD_SEND"
    tls: ssl.SSLContext | None = None  # DICOM over TLS, checking the receiver's certificate


def _meta(entry: StagedFile) -> tuple[str, str] | str:
    """(SOP class, transfer syntax) from the file's meta group, or why it is skipped."""
    if obvious_non_image(entry.name):
        return "not an image (skipped as import skips it)"
    try:
        meta = dcmread(entry.path, stop_before_pixels=True).file_meta
        pair = str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except Exception:  # whatever pydicom says of a non-DICOM file, it is skipped
        return "not a DICOM Part 10 file"
    if pair[0] == MEDIA_STORAGE_DIRECTORY:
        return "a DICOMDIR (skipped as import skips it)"
    return pair


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """pydicom's warnings and pynetdicom's error lines stay off the console: every
    outcome reaches the user once, in the summary or as a SendError."""
    library = logging.getLogger("pynetdicom")
    level = library.level
    library.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        library.setLevel(level)


def _not_established(target: Target, answers: list[Any]) -> SendError:
    """Why no association, from what the peer answered (``answers``: its PDUs)."""
    where = f"{target.host}:{target.port}"
    if not answers:
        return SendError(f"cannot connect to {where} (connection refused, or no answer)")
    if isinstance(answers[0], A_ASSOCIATE_RJ):
        pdu = answers[0]
        return SendError(
            f"{where} rejected the association (called AE {target.called_ae}, calling AE"
            f" {target.calling_ae}): {pdu.reason_str} ({pdu.result_str})"
        )
    return SendError(f"{where} accepted none of the files' SOP classes and transfer syntaxes")


def _send_batch(
    target: Target,
    batch: list[tuple[StagedFile, tuple[str, str]]],
) -> list[tuple[StagedFile, int | None, str]]:
    """Send over one association; (file, status or None, note) for each."""
    ae = AE(ae_title=target.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    pairs = sorted({pair for _, pair in batch})
    for sop_class, syntax in pairs[:MAX_CONTEXTS]:
        ae.add_requested_context(sop_class, [syntax])
    results: list[tuple[StagedFile, int | None, str]] = []
    answers: list[Any] = []

    def on_pdu(event: evt.Event) -> None:
        answers.append(event.pdu)  # the peer's answer to the request, for the one-line error

    assoc = ae.associate(
        target.host,
        target.port,
        ae_title=target.called_ae,
        tls_args=(target.tls, target.host) if target.tls is not None else None,
        evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)],
    )
    try:
        if not assoc.is_established:
            raise _not_established(target, answers)
        assoc.unbind(evt.EVT_PDU_RECV, on_pdu)
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        for entry, pair in batch:
            if pair not in accepted:
                results.append((entry, None, f"no accepted context for {pair[0]} in {pair[1]}"))
                continue
            if not assoc.is_established:
                results.append((entry, None, "association lost"))
                continue
            status = assoc.send_c_store(entry.path)
            code = int(status.Status) if "Status" in status else None
            # A failure's Error Comment (0000,0902) says why; xnatd always sends one.
            note = str(status.get("ErrorComment") or "") if code is not None else "no response"
            results.append((entry, code, note))
        if assoc.is_established:
            assoc.release()
    finally:
        ae.shutdown()
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.close()
    return results


_OK = (0x0000, 0xB000, 0xB006, 0xB007)  # success, and the warnings that still store


def _file_at_fault(code: int) -> bool:
    """0xCxxx cannot understand, 0xA9xx data set does not match SOP class (PS3.4 B.2.3)."""
    return (code & 0xF000) == 0xC000 or (code & 0xFF00) == 0xA900


def _attempt(
    pending: list[tuple[StagedFile, tuple[str, str]]],
    target: Target,
    associations: int,
    progress: Progress,
) -> list[tuple[StagedFile, int | None, str]]:
    """Send pending files over up to K associations at once."""
    lock = threading.Lock()
    outcomes: list[tuple[StagedFile, int | None, str]] = []
    errors: list[SendError] = []

    def work(batch: list[tuple[StagedFile, tuple[str, str]]]) -> None:
        try:
            results = _send_batch(target, batch)
        except SendError as exc:
            errors.append(exc)
            return
        with lock:
            outcomes.extend(results)
            for entry, code, _ in results:
                if code in _OK:
                    progress.advance(entry.size)

    threads = [
        threading.Thread(target=work, args=(pending[i::associations],))
        for i in range(min(associations, len(pending)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return outcomes


def send(
    files: list[StagedFile],
    target: Target,
    *,
    associations: int = 1,
    retries: int = 2,
    quiet: bool = False,
) -> SendSummary:
    """Send every DICOM file over up to K associations, retrying what may succeed later.

    Raises:
        SendError: the peer cannot be reached or refuses the association (at once,
            not once per file).
        UnsupportedPynetdicom: the installed pynetdicom does not fit scp/hooks.py.
    """
    # Our SCU threads too: pynetdicom's own reactor pause can lose a C-STORE-RSP and
    # wait out the DIMSE timeout (scp/hooks.py, _Checkpoint).
    hooks.install()
    with _quiet_libraries():
        return _send(files, target, associations, retries, quiet)


def _send(
    files: list[StagedFile], target: Target, associations: int, retries: int, quiet: bool
) -> SendSummary:
    summary = SendSummary()
    pending: list[tuple[StagedFile, tuple[str, str]]] = []
    for entry in files:
        pair = _meta(entry)
        if isinstance(pair, str):
            summary.skipped.append({"entry": entry.name, "reason": pair})
        else:
            pending.append((entry, pair))
    progress = Progress("send", len(pending), sum(e.size for e, _ in pending), quiet=quiet)
    # Raw bytes on the wire: the sender never decodes or re-encodes a file.
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        for attempt in range(retries + 1):
            if not pending:
                break
            summary.retries += len(pending) if attempt else 0
            contexts = dict(pending)
            pending = []
            for entry, code, note in _attempt(
                list(contexts.items()), target, associations, progress
            ):
                final = attempt == retries or (code is not None and _file_at_fault(code))
                if code in _OK:
                    summary.sent += 1
                elif final:  # the file is at fault: a retry gives the same answer
                    status = f"0x{code:04X}" if code is not None else "none"
                    summary.failed.append({"entry": entry.name, "status": status, "reason": note})
                else:
                    pending.append((entry, contexts[entry]))
                    continue
                if code is not None:
                    summary.statuses[f"0x{code:04X}"] += 1
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        progress.finish()
    return summary


def collect(path: Path, staging: Path) -> list[StagedFile]:
    """The files of a folder or archive (archives unpacked under staging)."""
    from xnatd.intake.staging import stage

    return stage(path, staging)
