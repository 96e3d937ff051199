"""``xnatd send``: the upload assistant, a C-STORE sender for a folder or an archive.

Files are sent as they are (their own transfer syntax, never re-encoded) over K
associations; failed instances are retried; a summary of statuses is returned.
Works against xnatd, DCMTK storescp and Orthanc alike.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, _config

from xnatd.intake.staging import StagedFile
from xnatd.progress import Progress
from xnatd.scp.transport import wake_association_on_message

# pynetdicom's send_c_store can lose a response to its own reactor (a stale pause
# flag) and wait out the DIMSE timeout; about one association in 400 against a
# receiver that answers within a millisecond. The daemon's fix covers our senders too.
wake_association_on_message()

MAX_CONTEXTS = 128  # presentation contexts one association may propose


@dataclass
class SendSummary:
    sent: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    retries: int = 0


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    called_ae: str
    calling_ae: str = "XNATD_SEND"
    tls: ssl.SSLContext | None = None  # DICOM over TLS, checking the receiver's certificate


def _meta(entry: StagedFile) -> tuple[str, str] | None:
    try:
        meta = dcmread(entry.path, stop_before_pixels=True).file_meta
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except Exception:
        return None


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
    tls_args = (target.tls, target.host) if target.tls is not None else None
    assoc = ae.associate(target.host, target.port, ae_title=target.called_ae, tls_args=tls_args)
    try:
        if not assoc.is_established:
            return [(entry, None, "association not established") for entry, _ in batch]
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
            results.append((entry, code, "" if code is not None else "no response"))
        if assoc.is_established:
            assoc.release()
    finally:
        ae.shutdown()
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.close()
    return results


_OK = (0x0000, 0xB000, 0xB006, 0xB007)  # success, and the warnings that still store


def _attempt(
    pending: list[tuple[StagedFile, tuple[str, str]]],
    target: Target,
    associations: int,
    progress: Progress,
) -> list[tuple[StagedFile, int | None, str]]:
    """Send pending files over up to K associations at once."""
    lock = threading.Lock()
    outcomes: list[tuple[StagedFile, int | None, str]] = []

    def work(batch: list[tuple[StagedFile, tuple[str, str]]]) -> None:
        results = _send_batch(target, batch)
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
    return outcomes


def send(
    files: list[StagedFile],
    target: Target,
    *,
    associations: int = 1,
    retries: int = 2,
    quiet: bool = False,
) -> SendSummary:
    summary = SendSummary()
    pending: list[tuple[StagedFile, tuple[str, str]]] = []
    for entry in files:
        pair = _meta(entry)
        if pair is None:
            summary.skipped.append({"entry": entry.name, "reason": "not a DICOM Part 10 file"})
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
                final = attempt == retries or (code is not None and (code & 0xF000) == 0xC000)
                if code in _OK:
                    summary.sent += 1
                elif final:  # 0xCxxx: the file is at fault, a retry gives the same answer
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
