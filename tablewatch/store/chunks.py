"""Packed chunks of points: many points per cell, compressed losslessly.

A chunk is the points of one series inside one time bucket (at most
``MAX_CHUNK_POINTS`` of them). Its qualifier is::

    first ts µs (8 bytes, big-endian) | point count (4) | content hash (8)

so the chunks of a row sort in time order, a row's point count is known from
its qualifiers alone, and writing the same points twice produces the same
cell (same row, qualifier and timestamp): writes are idempotent. The content
hash is taken over the points themselves (the raw layout below), not over the
compressed bytes, so it does not depend on the compressor's version, and a
chunk written in the raw layout by an older version is replaced, not
duplicated, when the same points are written again.

A value starts with a flags byte. Two layouts:

- **raw** (flags 0 or 1, the only layout before compression existed, still
  written for chunks of fewer than ``MIN_PACKED_POINTS`` points): little-endian
  arrays ts (int64 µs), values (float64) and, when flag ``HAS_STEPS`` is set,
  steps (int64). 16 or 24 bytes per point.
- **packed** (flag ``PACKED``): a header ``value kind (1 byte) | decimal digits
  (1) | ts width (1) | values width (1) | steps width (1) | point count (4,
  little-endian)``, then one Zstandard frame (level ``ZSTD_LEVEL``) holding
  three streams back to back:

  * ts: the first timestamp (8 bytes), then either ``REGULAR`` (width) and the
    stride (8 bytes) when every delta is the same, or the deltas of deltas
    (the first delta, then 0 for each regular step), zigzag-coded so that
    small negative numbers are small, in the fewest bytes (width 1, 2, 4 or
    8) that hold them all, byte-shuffled (all first bytes, then all second
    bytes, ...);
  * values, one of two kinds chosen per chunk: ``DECIMAL`` when every value is
    exactly the double nearest ``integer / 10**digits`` for some digits <=
    ``MAX_DECIMAL_DIGITS`` (a latency rounded to 0.1 ms or to 3 significant
    digits, a count, a percentage: the idea of ALP, SIGMOD 2024): the first
    integer (8 bytes), then the integers' deltas (first order), zigzag-coded,
    narrowed and shuffled like the ts deltas; else
    ``XOR``: each value's IEEE bits XOR the previous value's (Gorilla, VLDB
    2015), 8 bytes byte-shuffled, so that the zero bits shared by neighbouring
    values become planes of zero bytes;
  * steps (when ``HAS_STEPS``): like ts (0, 1, 2, ... and constant strides
    cost 16 bytes a chunk).

  Zstandard removes the zero and repeated bytes; every step is a whole-array
  numpy operation (decoding 1- and 2-byte deltas is one table lookup).

Decoding reproduces the points bit for bit (``-0.0``, NaN payloads, infinities
and ``NO_STEP`` included), and encoding is deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import threading
from collections.abc import Sequence

import numpy as np
import zstandard

from tablewatch.store.table import PackedBytes

MAX_CHUNK_POINTS = 65_536
HAS_STEPS = 1
PACKED = 2
_QUALIFIER = struct.Struct(">qI")
QUALIFIER_BYTES = _QUALIFIER.size + 8
NO_STEP = np.iinfo(np.int64).min

#: Chunks with fewer points are written raw: a Zstandard frame and the packed
#: header cost more than they save, and a one-point write stays cheap.
MIN_PACKED_POINTS = 8
#: Zstandard level of packed chunks (chosen by ``python -m bench codec``).
ZSTD_LEVEL = 1
#: Stream width of equal strides (the stream is the first value and the stride).
REGULAR = 255
_WIDTHS = (1, 2, 4, 8, REGULAR)
#: Value kinds of a packed chunk.
XOR = 0
DECIMAL = 1
#: Most decimal digits tried: 10**15 is exact in a double, and integers up to
#: 2**53 are, so ``integer / 10**digits`` is the correctly rounded decimal.
MAX_DECIMAL_DIGITS = 15
_EXACT_INTEGER = float(2**53)
#: flags, value kind, decimal digits, widths of ts, values and steps, point count
_HEADER = struct.Struct("<BBBBBBI")
_SAMPLE_POINTS = 64
#: :func:`decode_many` decodes chunks of one layout and one point count as a
#: 2-D block when there are at least this many of them.
BLOCK_CHUNKS = 8
#: ... and places a group's points with slice copies when its chunks form fewer
#: runs than this among all the chunks (else with one scatter).
PLACE_RUNS = 256

_codecs = threading.local()  # one compressor and decompressor per thread (not thread-safe)


def encode(ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> tuple[bytes, bytes]:
    """(qualifier, value) of one chunk; ``ts`` sorted ascending, int64 µs."""
    flags = HAS_STEPS if steps is not None else 0
    if len(ts) < MIN_PACKED_POINTS:  # the raw layout: hash what is stored
        value = _raw(flags, ts, values, steps)
        digest = hashlib.blake2b(value, digest_size=8).digest()
        return _QUALIFIER.pack(int(ts[0]), len(ts)) + digest, value
    ts = np.ascontiguousarray(ts, dtype="<i8")
    values = np.ascontiguousarray(values, dtype="<f8")
    steps = np.ascontiguousarray(steps, dtype="<i8") if steps is not None else None
    hasher = hashlib.blake2b(bytes([flags]), digest_size=8)  # the raw layout's bytes, piece by piece
    for array in (ts, values) if steps is None else (ts, values, steps):
        hasher.update(array)
    layout, body = pack_streams(ts, values, steps)
    value = _HEADER.pack(flags | PACKED, *layout, len(ts)) + _compressor().compress(body)
    return _QUALIFIER.pack(int(ts[0]), len(ts)) + hasher.digest(), value


def encode_many(
    ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None,
    starts: np.ndarray, stops: np.ndarray, has_steps: np.ndarray | None = None,
) -> tuple[Sequence[bytes], Sequence[bytes]]:
    """(qualifiers, values) of many chunks at once, byte for byte what
    :func:`encode` gives for each: chunk ``i`` holds points ``starts[i]:stops[i]``
    of the arrays (with their steps when ``has_steps[i]``). Chunks in the raw
    layout (fewer than ``MIN_PACKED_POINTS`` points: the one-point chunks of a
    fleet of series) are built a whole array at a time, per point count; only
    their content hash is computed chunk by chunk. When every chunk is raw and
    of one point count, both columns are :class:`PackedBytes` (one blob each)."""
    count = len(starts)
    starts = np.asarray(starts, dtype=np.int64)
    sizes = np.asarray(stops, dtype=np.int64) - starts
    with_steps = np.zeros(count, dtype=bool) if steps is None or has_steps is None else np.asarray(has_steps, bool)
    qualifiers: list[bytes] = [b""] * count
    cells: list[bytes] = [b""] * count
    raw = sizes < MIN_PACKED_POINTS
    for i in np.flatnonzero(~raw).tolist():
        lo, hi = int(starts[i]), int(starts[i] + sizes[i])
        qualifiers[i], cells[i] = encode(ts[lo:hi], values[lo:hi], steps[lo:hi] if with_steps[i] else None)
    if not raw.any():
        return qualifiers, cells
    for size, stepped in sorted(set(zip(sizes[raw].tolist(), with_steps[raw].tolist()))):
        which = np.flatnonzero(raw & (sizes == size) & (with_steps == stepped))
        quals, values_of = _raw_many(ts, values, steps if stepped else None, starts[which], size)
        if len(which) == count:
            return quals, values_of
        for i, qualifier, cell in zip(which.tolist(), quals, values_of):
            qualifiers[i], cells[i] = qualifier, cell
    return qualifiers, cells


def _raw_many(
    ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None, starts: np.ndarray, size: int
) -> tuple[PackedBytes, PackedBytes]:
    """Chunks of ``size`` points each in the raw layout, one array operation
    per field: (qualifiers, values), each column one blob."""
    points = starts[:, None] + np.arange(size)
    fields = [("flags", "u1"), ("ts", "<i8", (size,)), ("values", "<f8", (size,))]
    if steps is not None:
        fields.append(("steps", "<i8", (size,)))
    rows = np.empty(len(starts), dtype=np.dtype(fields))  # packed: the raw layout, row after row
    rows["flags"] = HAS_STEPS if steps is not None else 0
    rows["ts"] = ts[points]
    rows["values"] = values[points]
    if steps is not None:
        rows["steps"] = steps[points]
    blob, width = rows.tobytes(), rows.dtype.itemsize
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(cell, digest_size=8).digest() for cell in PackedBytes(blob, width)])
    heads = np.empty(len(starts), dtype=[("ts", ">i8"), ("count", ">u4"), ("digest", "S8")])  # the qualifier
    heads["ts"] = ts[starts]
    heads["count"] = size
    heads["digest"] = np.frombuffer(digests, dtype="S8")
    return PackedBytes(heads.tobytes(), heads.dtype.itemsize), PackedBytes(blob, width)


def count_of(qualifier: bytes) -> int:
    """Points in a chunk, read from its qualifier."""
    return _QUALIFIER.unpack_from(qualifier)[1]


def decode(value: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(ts, values, steps or None) of a chunk value in either layout."""
    flags = value[0]
    if not flags & PACKED:
        return _decode_raw(value)
    _, *layout, n = _HEADER.unpack_from(value)
    body = _decompressor().decompress(memoryview(value)[_HEADER.size :])
    return unpack_streams(body, n, tuple(layout), bool(flags & HAS_STEPS))


# -- the streams ---------------------------------------------------------------------------------


def pack_streams(ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> tuple[tuple[int, ...], bytes]:
    """(layout, streams) before compression; layout is (value kind, decimal
    digits, ts width, value width, steps width): the bytes per point of each
    stream, or ``REGULAR`` for a stream of equal strides."""
    digits, integers = _decimal(values)
    if digits is None:
        bits = values.view("<u8")
        xor = np.empty_like(bits)
        xor[0] = bits[0]
        np.bitwise_xor(bits[1:], bits[:-1], out=xor[1:])
        kind, digits, value_width, value_stream = XOR, 0, 8, _shuffle(xor)
    else:
        kind, (value_width, value_stream) = DECIMAL, _pack_integers(integers, order=1)
    ts_width, ts_stream = _pack_integers(ts, order=2)
    step_width, step_stream = _pack_integers(steps, order=2) if steps is not None else (0, b"")
    return (kind, digits, ts_width, value_width, step_width), ts_stream + value_stream + step_stream


def unpack_streams(
    body: bytes, n: int, layout: tuple[int, ...], has_steps: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Inverse of :func:`pack_streams`."""
    kind, digits, ts_width, value_width, step_width = layout
    widths = (ts_width, value_width, step_width) if has_steps else (ts_width, value_width)
    if any(width not in _WIDTHS for width in widths):
        raise ValueError(f"packed chunk: stream widths {widths} are not among {_WIDTHS}")
    sizes = [_stream_bytes(n, ts_width), _stream_bytes(n, value_width), _stream_bytes(n, step_width) if has_steps else 0]
    if len(body) != sum(sizes) or kind not in (XOR, DECIMAL) or (kind == XOR and value_width != 8):
        raise ValueError(f"packed chunk: {len(body)} bytes do not hold {n} points of layout {layout}")
    ts = _unpack_integers(body, 0, n, ts_width, order=2)
    if kind == XOR:
        words = _unshuffle(body, sizes[0], n, 8)
        values = np.bitwise_xor.accumulate(words, out=words).view("<f8")
    else:
        values = _unpack_integers(body, sizes[0], n, value_width, order=1).astype(np.float64)
        values /= 10.0**digits
    steps = _unpack_integers(body, sizes[0] + sizes[1], n, step_width, order=2) if has_steps else None
    return ts, values, steps


def _pack_integers(a: np.ndarray, order: int) -> tuple[int, bytes]:
    """(width, stream) of int64s: the first value (8 bytes), then ``REGULAR``
    and the stride when the strides are all equal (order 2), else the other
    zigzag-coded deltas in the fewest bytes (1, 2, 4 or 8) that hold them all."""
    deltas = _deltas(a, order)
    if order == 2 and len(a) > 2 and not deltas[2:].any():
        return REGULAR, deltas[:2].tobytes()
    words = _zigzag(deltas[1:])
    top = int(words.max()) if len(words) else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    return width, deltas[:1].tobytes() + _shuffle(words.astype(f"<u{width}"))


def _unpack_integers(body: bytes, offset: int, n: int, width: int, order: int) -> np.ndarray:
    """Inverse of :func:`_pack_integers`: a fresh int64 array."""
    if width == REGULAR:
        first, stride = (int(x) for x in np.frombuffer(body, dtype="<i8", count=2, offset=offset))
        if stride == 0:
            return np.full(n, first, dtype=np.int64)
        if -(2**63) <= first + stride * n < 2**63:  # one pass
            return np.arange(first, first + stride * n, stride, dtype=np.int64)
        return np.int64(first) + np.int64(stride) * np.arange(n, dtype=np.int64)  # wraps like the deltas did
    deltas = np.empty(n, dtype=np.int64)
    deltas[0] = np.frombuffer(body, dtype="<i8", count=1, offset=offset)[0]
    stream = _unshuffle(body, offset + 8, n - 1, width)
    if width <= 2:
        np.take(_unzigzag_table(width), stream, out=deltas[1:])
    else:
        deltas[1:] = _unzigzag(stream.astype(np.uint64))
    return _sums(deltas, order)


def _stream_bytes(n: int, width: int) -> int:
    return 16 if width == REGULAR else 8 + (n - 1) * width


@functools.cache
def _unzigzag_table(width: int) -> np.ndarray:
    """Every 1- or 2-byte zigzag word's value: decoding is one lookup."""
    return _unzigzag(np.arange(1 << (8 * width), dtype=np.uint64))


def _decimal(values: np.ndarray) -> tuple[int | None, np.ndarray | None]:
    """The fewest decimal digits d such that every value is exactly the
    double nearest ``integer / 10**d`` (and the integers), else (None, None).
    Tried on a sample first, so that random doubles cost little."""
    sample = values[:: max(1, len(values) // _SAMPLE_POINTS)]
    if not np.isfinite(sample).all():
        return None, None
    for digits in range(MAX_DECIMAL_DIGITS + 1):
        found = _as_decimal(sample, digits)
        if found is _TOO_BIG:
            return None, None
        if found is not None:
            if not np.isfinite(values).all():
                return None, None
            integers = _as_decimal(values, digits)
            return (digits, integers) if isinstance(integers, np.ndarray) else (None, None)
    return None, None


_TOO_BIG = object()


def _as_decimal(values: np.ndarray, digits: int) -> np.ndarray | object | None:
    """The integers ``values * 10**digits`` if dividing them back gives exactly
    ``values`` (the computation :func:`unpack_streams` does), None if not, and
    ``_TOO_BIG`` if they are past the doubles' exact integers (more digits will
    not help)."""
    scale = 10.0**digits
    with np.errstate(over="ignore"):
        scaled = np.rint(values * scale)
    if np.abs(scaled).max() >= _EXACT_INTEGER:
        return _TOO_BIG
    integers = scaled.astype(np.int64)
    back = integers.astype(np.float64) / scale
    return integers if np.array_equal(back.view("<u8"), values.view("<u8")) else None


def _deltas(a: np.ndarray, order: int) -> np.ndarray:
    """``a[0]``, then first differences (order 1) or the first difference and
    then differences of differences (order 2); wrapping int64 arithmetic."""
    out = np.empty(len(a), dtype=np.int64)
    out[0] = a[0]
    np.subtract(a[1:], a[:-1], out=out[1:])
    if order == 2 and len(a) > 2:
        out[2:] = out[2:] - out[1:-1]
    return out


def _sums(d: np.ndarray, order: int) -> np.ndarray:
    """Inverse of :func:`_deltas`, in place."""
    if order == 2 and len(d) > 2:
        np.cumsum(d[1:], out=d[1:])
    return np.cumsum(d, out=d)


def _zigzag(a: np.ndarray) -> np.ndarray:
    """int64 -> uint64 with small magnitudes small: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    return ((a << 1) ^ (a >> 63)).view("<u8")


def _unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_zigzag`, in place."""
    sign = z & np.uint64(1)
    np.negative(sign, out=sign)  # 0 or all ones
    z >>= np.uint64(1)
    z ^= sign
    return z.view(np.int64)


def _shuffle(words: np.ndarray) -> bytes:
    """Byte planes of unsigned words: every word's byte 0, then byte 1, ..."""
    width = words.dtype.itemsize
    return words.tobytes() if width == 1 else np.ascontiguousarray(words.view(np.uint8).reshape(-1, width).T).tobytes()


def _unshuffle(body: bytes, offset: int, n: int, width: int) -> np.ndarray:
    """Inverse of :func:`_shuffle`: ``n`` words of ``width`` bytes at ``offset``
    (a fresh array; for width 1, a read-only view of ``body``)."""
    planes = np.frombuffer(body, dtype=np.uint8, count=width * n, offset=offset).reshape(width, n)
    if width == 1:
        return planes[0]
    words = np.empty((n, width), dtype=np.uint8)
    for byte in range(width):  # strided copies, faster than one transposing copy
        words[:, byte] = planes[byte]
    return words.view(f"<u{width}").reshape(n)


# -- raw layout and codec objects ------------------------------------------------------------------


def _raw(flags: int, ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> bytes:
    parts = [bytes([flags]), ts.astype("<i8", copy=False).tobytes(), values.astype("<f8", copy=False).tobytes()]
    if steps is not None:
        parts.append(steps.astype("<i8", copy=False).tobytes())
    return b"".join(parts)


def _decode_raw(value: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    flags = value[0]
    width = 3 if flags & HAS_STEPS else 2
    n = (len(value) - 1) // (8 * width)
    ts = np.frombuffer(value, dtype="<i8", count=n, offset=1)
    values = np.frombuffer(value, dtype="<f8", count=n, offset=1 + 8 * n)
    steps = np.frombuffer(value, dtype="<i8", count=n, offset=1 + 16 * n) if flags & HAS_STEPS else None
    return ts, values, steps


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_codecs, "compressor", None)
    if compressor is None:
        compressor = _codecs.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_codecs, "decompressor", None)
    if decompressor is None:
        decompressor = _codecs.decompressor = zstandard.ZstdDecompressor()
    return decompressor


# -- many chunks at once -----------------------------------------------------------------------------


def decode_many(values: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ts, values, steps, counts): the points of many chunk values, concatenated
    in the order given (``chunks.NO_STEP`` where a chunk has no steps), and each
    chunk's point count. The same points as :func:`decode` on each, bit for bit,
    but packed chunks of one layout are decoded together, a few whole-array
    operations for all of them instead of a dozen per chunk."""
    counts = np.empty(len(values), dtype=np.int64)
    groups: dict[tuple[int, ...], list[int]] = {}
    raw: list[int] = []
    for i, value in enumerate(values):
        flags = value[0]
        if flags & PACKED:
            _, *layout, n = _HEADER.unpack_from(value)
            counts[i] = n
            groups.setdefault((flags & HAS_STEPS, *layout), []).append(i)
        else:
            raw.append(i)
            counts[i] = (len(value) - 1) // (8 * (3 if flags & HAS_STEPS else 2))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ts = np.empty(offsets[-1], dtype=np.int64)
    out_values = np.empty(offsets[-1], dtype=np.float64)
    steps = np.full(offsets[-1], NO_STEP, dtype=np.int64)
    for i in raw:
        chunk_ts, chunk_values, chunk_steps = _decode_raw(values[i])
        ts[offsets[i] : offsets[i + 1]] = chunk_ts
        out_values[offsets[i] : offsets[i + 1]] = chunk_values
        if chunk_steps is not None:
            steps[offsets[i] : offsets[i + 1]] = chunk_steps
    decompress = _decompressor().decompress
    for (has_steps, *layout), members in groups.items():
        bodies = [decompress(memoryview(values[i])[_HEADER.size :]) for i in members]
        members = np.array(members, dtype=np.int64)
        n = counts[members]
        # Chunks of one point count (a bulk write's full buckets) form a 2-D
        # block each: whole-block reshapes, no index arithmetic per point.
        sizes, size_of, per_size = np.unique(n, return_inverse=True, return_counts=True)
        in_block = per_size[size_of] >= BLOCK_CHUNKS
        for size in sizes[per_size >= BLOCK_CHUNKS].tolist():
            which = np.flatnonzero(n == size)
            decoded = _unpack_block([bodies[j] for j in which.tolist()], size, tuple(layout), bool(has_steps))
            _place(offsets, members[which], n[which], decoded, ts, out_values, steps, len(values))
        rest = np.flatnonzero(~in_block)
        if len(rest):
            decoded = _unpack_streams_many([bodies[j] for j in rest.tolist()], n[rest], tuple(layout), bool(has_steps))
            _place(offsets, members[rest], n[rest], decoded, ts, out_values, steps, len(values))
    return ts, out_values, steps, counts


def _place(offsets: np.ndarray, members: np.ndarray, n: np.ndarray,
           decoded: tuple[np.ndarray, np.ndarray, np.ndarray | None],
           ts: np.ndarray, values: np.ndarray, steps: np.ndarray, chunk_count: int) -> None:
    """Write the points of the chunks ``members`` (``n`` points each, decoded
    and concatenated) to their places among all the chunks' points."""
    if len(members) == chunk_count:
        where: list[tuple[slice, slice]] | np.ndarray = [(slice(None), slice(None))]
    else:
        # Runs of consecutive chunks are consecutive points: copied a slice at a
        # time when there are few runs, else scattered point by point.
        breaks = np.flatnonzero(np.diff(members) != 1) + 1
        if len(breaks) < PLACE_RUNS:
            firsts, ends = np.r_[0, breaks], np.r_[breaks, len(members)]
            decoded_at = np.r_[0, np.cumsum(n)]
            where = [(slice(offsets[members[a]], offsets[members[b - 1] + 1]), slice(decoded_at[a], decoded_at[b]))
                     for a, b in zip(firsts.tolist(), ends.tolist())]
        else:
            where = np.arange(len(decoded[0]), dtype=np.int64)
            where += np.repeat(offsets[members] - (np.cumsum(n) - n), n)
    if isinstance(where, np.ndarray):
        ts[where], values[where] = decoded[0], decoded[1]
        if decoded[2] is not None:
            steps[where] = decoded[2]
        return
    for into, source in where:
        ts[into], values[into] = decoded[0][source], decoded[1][source]
        if decoded[2] is not None:
            steps[into] = decoded[2][source]


def _unpack_block(
    bodies: list[bytes], n: int, layout: tuple[int, ...], has_steps: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`unpack_streams` of chunks of ``n`` points each and one layout,
    concatenated: their bodies are rows of one 2-D array."""
    kind, digits, ts_width, value_width, step_width = layout
    widths = (ts_width, value_width, step_width) if has_steps else (ts_width, value_width)
    if any(width not in _WIDTHS for width in widths) or kind not in (XOR, DECIMAL) or (kind == XOR and value_width != 8):
        raise ValueError(f"packed chunk: layout {layout} is not a known one")
    size = _stream_bytes(n, ts_width) + _stream_bytes(n, value_width) + (_stream_bytes(n, step_width) if has_steps else 0)
    if any(len(body) != size for body in bodies):
        raise ValueError(f"packed chunk: the bodies do not hold their points in layout {layout}")
    block = np.frombuffer(b"".join(bodies), dtype=np.uint8).reshape(len(bodies), size)
    ts = _block_integers(block, 0, n, ts_width, order=2)
    at = _stream_bytes(n, ts_width)
    if kind == XOR:
        values = np.bitwise_xor.accumulate(_block_words(block, at, n, 8), axis=1).view("<f8")
    else:
        values = _block_integers(block, at, n, value_width, order=1).astype(np.float64)
        values /= 10.0**digits
    at += _stream_bytes(n, value_width)
    steps = _block_integers(block, at, n, step_width, order=2).ravel() if has_steps else None
    return ts.ravel(), values.ravel(), steps


def _block_words(block: np.ndarray, at: int, n: int, width: int) -> np.ndarray:
    """:func:`_unshuffle` of each row's stream of ``n`` words at column ``at``: (rows, n)."""
    planes = block[:, at : at + n * width].reshape(len(block), width, n)
    return np.ascontiguousarray(planes.transpose(0, 2, 1)).view(f"<u{width}").reshape(len(block), n)


def _block_integers(block: np.ndarray, at: int, n: int, width: int, order: int) -> np.ndarray:
    """:func:`_unpack_integers` of each row's stream at column ``at``: (rows, n) int64."""
    first = np.ascontiguousarray(block[:, at : at + 8]).view("<i8")
    if width == REGULAR:
        stride = np.ascontiguousarray(block[:, at + 8 : at + 16]).view("<i8")
        return first + stride * np.arange(n, dtype=np.int64)  # wraps like the deltas did
    deltas = np.empty((len(block), n), dtype=np.int64)
    deltas[:, :1] = first
    if n > 1:
        words = _block_words(block, at + 8, n - 1, width)
        deltas[:, 1:] = _unzigzag_table(width)[words] if width <= 2 else _unzigzag(words.astype(np.uint64))
    if order == 2 and n > 2:
        np.cumsum(deltas[:, 1:], axis=1, out=deltas[:, 1:])
    return np.cumsum(deltas, axis=1, out=deltas)


def _unpack_streams_many(
    bodies: list[bytes], n: np.ndarray, layout: tuple[int, ...], has_steps: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`unpack_streams` of many chunks of one layout, concatenated."""
    kind, digits, ts_width, value_width, step_width = layout
    widths = (ts_width, value_width, step_width) if has_steps else (ts_width, value_width)
    if any(width not in _WIDTHS for width in widths) or kind not in (XOR, DECIMAL) or (kind == XOR and value_width != 8):
        raise ValueError(f"packed chunk: layout {layout} is not a known one")
    if (n < 1).any():
        raise ValueError("packed chunk: a chunk of no points")
    lengths = np.fromiter((len(body) for body in bodies), dtype=np.int64, count=len(bodies))
    ts_bytes, value_bytes = _streams_bytes(n, ts_width), _streams_bytes(n, value_width)
    step_bytes = _streams_bytes(n, step_width) if has_steps else 0
    if not np.array_equal(lengths, ts_bytes + value_bytes + step_bytes):
        raise ValueError(f"packed chunk: the bodies do not hold their points in layout {layout}")
    body = np.frombuffer(b"".join(bodies), dtype=np.uint8)
    starts = np.zeros(len(bodies), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    points = _Segments(n)
    ts = _unpack_integers_many(body, starts, points, ts_width, order=2)
    if kind == XOR:
        words = _unshuffle_many(body, starts + ts_bytes, points, n, points.index, 8)
        prefix = np.bitwise_xor.accumulate(words)
        values = (prefix ^ points.before(prefix)).view("<f8")
    else:
        values = _unpack_integers_many(body, starts + ts_bytes, points, value_width, order=1).astype(np.float64)
        values /= 10.0**digits
    steps = _unpack_integers_many(body, starts + ts_bytes + value_bytes, points, step_width, order=2) if has_steps else None
    return ts, values, steps


class _Segments:
    """Concatenated chunks of ``n`` points each: for every point its chunk and
    its index inside it, and segmented (per chunk) prefix sums."""

    def __init__(self, n: np.ndarray) -> None:
        self.n = n
        self.first = np.zeros(len(n), dtype=np.int64)  # each chunk's first point
        np.cumsum(n[:-1], out=self.first[1:])
        self.chunk = np.repeat(np.arange(len(n), dtype=np.int64), n)
        self.index = np.arange(int(n.sum()), dtype=np.int64) - self.first[self.chunk]

    def before(self, prefix: np.ndarray) -> np.ndarray:
        """Per point, the prefix value just before its chunk (0 for the first chunk)."""
        ends = np.zeros(len(self.n), dtype=prefix.dtype)
        ends[1:] = prefix[self.first[1:] - 1]
        return ends[self.chunk]

    def cumsum(self, a: np.ndarray) -> np.ndarray:
        """Cumulative sums restarting at each chunk (wrapping int64 like :func:`_sums`)."""
        prefix = np.cumsum(a)
        prefix -= self.before(prefix)
        return prefix


def _streams_bytes(n: np.ndarray, width: int) -> np.ndarray:
    return np.full(len(n), 16, dtype=np.int64) if width == REGULAR else 8 + (n - 1) * width


def _int64_at(body: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(body[at[:, None] + np.arange(8)]).view("<i8").reshape(len(at))


def _unshuffle_many(body: np.ndarray, at: np.ndarray, points: _Segments, n: np.ndarray, index: np.ndarray,
                    width: int, chunk: np.ndarray | None = None) -> np.ndarray:
    """:func:`_unshuffle` of many streams: word ``index`` of the stream of ``n``
    words starting at ``at`` of each point's chunk (``chunk``, default every point's)."""
    chunk = points.chunk if chunk is None else chunk
    position = at[chunk] + index
    stride = n[chunk]
    words = np.empty((len(index), width), dtype=np.uint8)
    for byte in range(width):
        if byte:
            position += stride
        words[:, byte] = body.take(position)
    return words.view(f"<u{width}").reshape(len(index))


def _unpack_integers_many(body: np.ndarray, at: np.ndarray, points: _Segments, width: int, order: int) -> np.ndarray:
    """:func:`_unpack_integers` of many streams (one per chunk, starting at ``at``), concatenated."""
    first = _int64_at(body, at)
    if width == REGULAR:
        stride = _int64_at(body, at + 8)
        return first[points.chunk] + stride[points.chunk] * points.index
    deltas = np.empty(len(points.index), dtype=np.int64)
    deltas[points.first] = first
    later = np.flatnonzero(points.index)  # every point but each chunk's first
    chunk = points.chunk[later]
    stream = _unshuffle_many(body, at + 8, points, points.n - 1, points.index[later] - 1, width, chunk)
    if width <= 2:
        deltas[later] = np.take(_unzigzag_table(width), stream)
    else:
        deltas[later] = _unzigzag(stream.astype(np.uint64))
    if order == 2:  # the first delta, then deltas of deltas: sum them within the chunk first
        firsts = deltas[points.first]
        deltas[points.first] = 0
        deltas = points.cumsum(deltas)
        deltas[points.first] = firsts
    return points.cumsum(deltas)
