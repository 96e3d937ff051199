"""Who may open an association: AE title checks and the calling-side allow-list.

Pure: values in, values out, so association policy is tested without sockets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A-ASSOCIATE-RJ (result, source, diagnostic): rejected-permanent, service-user, ...
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)


def check_ae_title(title: object) -> str:
    """Validate an AE title: 1 to 16 printable ASCII characters, no backslash.

    Raises:
        ValueError: with what is wrong.
    """
    if not isinstance(title, str):
        raise ValueError(f"{title!r} is not an AE title (a string of 1 to 16 characters)")
    if not 1 <= len(title) <= 16:
        raise ValueError(f"AE title {title!r} must have 1 to 16 characters")
    if title != title.strip():
        raise ValueError(f"AE title {title!r} has leading or trailing spaces")
    if "\\" in title or not all(32 <= ord(char) < 127 for char in title):
        raise ValueError(f"AE title {title!r} must be printable ASCII without backslash")
    return title


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list item: ``AE``, ``AE@10.0.0.0/8`` or ``192.168.1.7``."""

    ae_title: str | None
    network: IPNetwork | None

    @classmethod
    def parse(cls, text: object) -> AllowEntry:
        """Parse an item; a bare item is tried as an address or network first (as XNAT).

        Raises:
            ValueError: the item is neither an AE title nor an address.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{text!r} is not an allow-list item (AE, AE@CIDR or address)")
        text = text.strip()
        if "@" in text:
            title, _, address = text.partition("@")
            try:
                network = ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ValueError(f"{address!r} in {text!r} is not an address or network") from None
            return cls(check_ae_title(title), network)
        try:
            return cls(None, ipaddress.ip_network(text, strict=False))
        except ValueError:
            return cls(check_ae_title(text), None)

    def admits(self, calling_ae: str, address: str) -> bool:
        """Whether a caller with this AE title from this address matches the item."""
        if self.ae_title is not None and self.ae_title != calling_ae.strip():
            return False
        if self.network is not None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            if ip.version != self.network.version or ip not in self.network:
                return False
        return True


def is_allowed(allow: Sequence[AllowEntry], calling_ae: str, address: str) -> bool:
    """An empty list admits everyone; otherwise one entry must admit the caller."""
    return not allow or any(entry.admits(calling_ae, address) for entry in allow)
