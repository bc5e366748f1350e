"""Packed chunks of points: many points per cell.

A chunk is the points of one series inside one time bucket (at most
``MAX_CHUNK_POINTS`` of them). Its qualifier is::

    first ts µs (8 bytes, big-endian) | point count (4) | content hash (8)

so the chunks of a row sort in time order, a row's point count is known from
its qualifiers alone, and writing the same points twice produces the same
cell (same row, qualifier and timestamp): writes are idempotent.

Its value is a flags byte then little-endian arrays: ts (int64 µs), values
(float64) and, when flag 1 is set, steps (int64).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

MAX_CHUNK_POINTS = 65_536
HAS_STEPS = 1
_QUALIFIER = struct.Struct(">qI")
QUALIFIER_BYTES = _QUALIFIER.size + 8
NO_STEP = np.iinfo(np.int64).min


def encode(ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> tuple[bytes, bytes]:
    """(qualifier, value) of one chunk; ``ts`` sorted ascending."""
    flags = HAS_STEPS if steps is not None else 0
    parts = [bytes([flags]), ts.astype("<i8", copy=False).tobytes(), values.astype("<f8", copy=False).tobytes()]
    if steps is not None:
        parts.append(steps.astype("<i8", copy=False).tobytes())
    value = b"".join(parts)
    digest = hashlib.blake2b(value, digest_size=8).digest()
    return _QUALIFIER.pack(int(ts[0]), len(ts)) + digest, value


def count_of(qualifier: bytes) -> int:
    """Points in a chunk, read from its qualifier."""
    return _QUALIFIER.unpack_from(qualifier)[1]


def decode(value: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    flags = value[0]
    width = 3 if flags & HAS_STEPS else 2
    n = (len(value) - 1) // (8 * width)
    ts = np.frombuffer(value, dtype="<i8", count=n, offset=1)
    values = np.frombuffer(value, dtype="<f8", count=n, offset=1 + 8 * n)
    steps = np.frombuffer(value, dtype="<i8", count=n, offset=1 + 16 * n) if flags & HAS_STEPS else None
    return ts, values, steps
