"""Types of the compiled MD5 lanes (_md5lanes.c)."""

from collections.abc import Sequence

def digests(buffers: Sequence[bytes | bytearray | memoryview], /) -> list[bytes]:
    """The 16-byte MD5 digest of each buffer, in order."""
