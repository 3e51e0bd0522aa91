"""AWS's event-stream framing (`application/vnd.amazon.eventstream`), the binary frames Bedrock streams in.

A message is a prelude (its total length, its headers' length, their CRC32),
headers (a name, the string type 7, a value), the payload, and the CRC32 of all
that came before: botocore's `EventStreamBuffer` and Smithy's decoder check
both sums and refuse a message that fails either. Each message is built whole
and sent as one piece, so none is ever written in part.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

#: A header value's type: a string (of the types the framing defines, the only one Bedrock's events use).
STRING_TYPE = 7
PRELUDE_LENGTH = 12
CRC_LENGTH = 4


def message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: `headers` (each a string) and `payload`, with its lengths and checksums."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = PRELUDE_LENGTH + len(encoded) + len(payload) + CRC_LENGTH
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return (
        bytes([len(name_bytes)]) + name_bytes + bytes([STRING_TYPE]) + struct.pack(">H", len(value_bytes)) + value_bytes
    )
