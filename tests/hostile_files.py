"""Files a hostile or careless source could hand FUME, made small on disk for the tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def write_bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A 1-bit gray PNG of width x height, all black: ~50 MB of scanlines deflated to tens of KB.
    Written chunk by chunk with zlib, so the test never holds the decoded image in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, gray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path
