"""A bare pynetdicom Storage SCP, the benchmark's floor for a Python receiver.

Every storage SOP class, unlimited PDU size, the dataset's bytes written as received
(no decoding, no fsync), or nothing at all with ``--discard`` (protocol only).

    python3 bench/pynetdicom_peer.py PORT OUT_DIR [--discard]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification

_config.UNRESTRICTED_STORAGE_SERVICE = True
_config.LOG_REQUEST_IDENTIFIERS = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--discard", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def on_store(event: evt.Event) -> int:
        if not args.discard:
            name = args.out / str(event.request.AffectedSOPInstanceUID)
            name.write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="PEER")
    ae.maximum_pdu_size = 0
    ae.maximum_associations = 64
    ae.add_supported_context(Verification)
    ae.start_server(
        ("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )


if __name__ == "__main__":
    main()
