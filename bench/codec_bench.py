"""Bytes per point: the chunk codec against the raw layout and the other
candidates it was chosen from, and the SQLite file after compaction.

Data kinds (1M points each, cut into chunks of 65,536 points as the store
does):

- ``loss f32``: a decaying loss with 1 % noise as a training loop logs it
  (``loss.item()`` of a float32 tensor: a float64 holding a float32), 1 Hz
  timestamps, steps 0, 1, 2, ...;
- ``loss f64``: the same curve computed in float64 (45 random bits a point:
  no lossless codec gets near 3 bytes);
- ``latency 0.1ms``: a latency in seconds (log-normal around 20 ms) rounded
  to 0.1 ms, 1 Hz timestamps;
- ``latency 3 digits``: the same latency rounded to 3 significant digits
  (0.0213, 0.00487, 0.152);
- ``latency jitter``: the same with timestamps 1 s ± 5 ms apart (a Collector's
  flush times), which the ≤ 3 bytes target does not cover (it is for regular
  timestamps);
- ``latency unrounded``: the latency as measured (``perf_counter``
  differences: full float64 noise), which is random doubles to a codec;
- ``constant``: 0.5 at every point, 1 Hz timestamps;
- ``random``: standard normal doubles, 1 Hz timestamps.

Candidates: ``raw`` (the layout before compression: int64 ts, float64 values,
int64 steps), ``zstd(raw)``, ``shuffle+zstd(raw)`` (byte planes of the raw
arrays, the usual float trick), ``blosc2(raw)`` (shuffle + zstd in C, all
cores), ``ours+lz4`` (our streams, LZ4 instead of Zstandard), ``ours zstd-3``
and ``ours`` (what ``tablewatch.store.chunks`` writes: delta-of-delta ts and
steps, decimal or XOR values, zstd level 1). Figures: bytes per point, and
encode / decode speed in million points per second (one thread).

Then the store itself: bulk ``write_points`` / ``read_points`` of 1M points
(the ``store`` section's data) with the chosen codec beside the raw layout,
and the SQLite file after 1M points expired and ``compact``: a file created
before auto_vacuum (stays as big), the same with ``--vacuum``, and a new file
(incremental vacuum during compact), with the longest read a concurrent reader
saw meanwhile.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import blosc2
import lz4.frame
import numpy as np
import zstandard

from bench.common import Result, best_of, recent_midnight
from tablewatch.store import chunks, open_store

SECTION = "codec"
N = 1_000_000
CHUNK = chunks.MAX_CHUNK_POINTS
T0_US = recent_midnight() * 1_000_000
DAY = 86_400.0

Points = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def data_kinds(n: int = N) -> dict[str, tuple[Points, float | None]]:
    """Data kind -> (points, bytes/point target of the chosen codec)."""
    rng = np.random.default_rng(17)
    regular = T0_US + np.arange(n) * 1_000_000
    jittered = np.sort(regular + rng.integers(-5_000, 5_000, n))
    t = np.arange(n)
    curve = 2.5 * np.exp(-t / 300_000) + 0.3 + 0.01 * rng.normal(size=n)
    measured = rng.lognormal(np.log(0.02), 0.6, n)
    latency = np.round(measured, 4)
    scale = 10.0 ** (2 - np.floor(np.log10(measured)))
    return {
        "loss f32": ((regular, curve.astype(np.float32).astype(np.float64), t), 3.0),
        "loss f64": ((regular, curve, t), None),
        "latency 0.1ms": ((regular, latency, None), 3.0),
        "latency 3 digits": ((regular, np.round(measured * scale) / scale, None), 3.0),
        "latency jitter": ((jittered, latency, None), None),
        "latency unrounded": ((regular, measured, None), 10.0),
        "constant": ((regular, np.full(n, 0.5), None), 3.0),
        "random": ((regular, rng.normal(size=n), None), 10.0),
    }


def _raw(ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> bytes:
    return b"".join(a.astype("<i8" if a is not values else "<f8").tobytes() for a in (ts, values, steps) if a is not None)


def _from_raw(raw: bytes, has_steps: bool) -> Points:
    words = np.frombuffer(raw, dtype="<i8").reshape(3 if has_steps else 2, -1)
    return words[0], words[1].view("<f8"), words[2] if has_steps else None


def _shuffled(raw: bytes) -> bytes:
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffled(planes: bytes) -> bytes:
    return np.frombuffer(planes, dtype=np.uint8).reshape(8, -1).T.tobytes()


def candidates() -> dict[str, tuple[Callable[[Points], bytes], Callable[[bytes, bool, int], Points]]]:
    """name -> (encode(points) -> bytes, decode(bytes, has_steps, n) -> points)."""
    z1, z3, dz = zstandard.ZstdCompressor(level=1), zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()

    def ours_with(compress: Callable[[bytes], bytes]) -> Callable[[Points], bytes]:
        def encode(points: Points) -> bytes:
            layout, body = chunks.pack_streams(*points)
            return bytes(layout) + compress(body)
        return encode

    def ours_decode_with(decompress: Callable[[bytes], bytes]) -> Callable[[bytes, bool, int], Points]:
        def decode(value: bytes, has_steps: bool, n: int) -> Points:
            return chunks.unpack_streams(decompress(value[5:]), n, tuple(value[:5]), has_steps)
        return decode

    return {
        "raw": (lambda p: _raw(*p), lambda v, s, n: _from_raw(v, s)),
        "zstd(raw)": (lambda p: z1.compress(_raw(*p)), lambda v, s, n: _from_raw(dz.decompress(v), s)),
        "shuffle+zstd(raw)": (lambda p: z1.compress(_shuffled(_raw(*p))),
                              lambda v, s, n: _from_raw(_unshuffled(dz.decompress(v)), s)),
        "blosc2(raw)": (lambda p: blosc2.compress2(_raw(*p), typesize=8, codec=blosc2.Codec.ZSTD, clevel=1,
                                                  filters=[blosc2.Filter.SHUFFLE]),
                        lambda v, s, n: _from_raw(blosc2.decompress2(v), s)),
        "ours+lz4": (ours_with(lz4.frame.compress), ours_decode_with(lz4.frame.decompress)),
        "ours zstd-3": (ours_with(z3.compress), ours_decode_with(dz.decompress)),
        "ours": (lambda p: chunks.encode(*p)[1], lambda v, s, n: chunks.decode(v)),
    }


def bench_candidates() -> list[Result]:
    results = []
    for kind, (points, target) in data_kinds().items():
        pieces = [tuple(None if a is None else a[i : i + CHUNK] for a in points) for i in range(0, N, CHUNK)]
        has_steps = points[2] is not None
        for name, (encode, decode) in candidates().items():
            encoded = [encode(p) for p in pieces]
            for piece, value in zip(pieces, encoded):  # every candidate is lossless here
                ts, values, steps = decode(value, has_steps, len(piece[0]))
                assert np.array_equal(ts, piece[0]) and np.array_equal(values.view("u8"), piece[1].view("u8"))
                assert (steps is None) == (piece[2] is None) and (steps is None or np.array_equal(steps, piece[2]))
            size = sum(len(v) for v in encoded) / N
            enc = N / best_of(3, lambda: [encode(p) for p in pieces]) / 1e6
            dec = N / best_of(3, lambda: [decode(v, has_steps, len(p[0])) for p, v in zip(pieces, encoded)]) / 1e6
            chosen = name == "ours" and target is not None
            speeds = f"encode {enc:.1f}M/s, " + ("decode: numpy views, no copy" if name == "raw" else f"decode {dec:.1f}M/s")
            results.append(Result(
                SECTION, f"{kind}: {name}", size, "bytes/point",
                f"<= {target:g}" if chosen else "", (size <= target) if chosen else None,
                speeds,
            ))
    return results


def _store_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``store`` section's workload: one day of 1M normal doubles with steps.
    (Written untagged by ``run``: a training run's points go to the family kept
    forever, ``r``; these to ``p``, the one measured and expired here.)"""
    rng = np.random.default_rng(7)
    return T0_US / 1e6 + np.arange(N) * (DAY / N), rng.normal(size=N), np.arange(N)


def bench_store(tmp: Path) -> list[Result]:
    """Write and read with both layouts in turn (raw, ours, raw, ours, ...), so
    that what else the machine does weighs on both alike; best of each."""
    ts, values, steps = _store_data()
    packed = chunks.MIN_PACKED_POINTS
    layouts = {"raw": 2**62, "ours": packed}  # raw: every chunk below the packing threshold
    best = {(layout, op): float("inf") for layout in layouts for op in ("write", "read")}
    stores = {}
    try:
        for attempt in range(3):
            for layout, min_packed in layouts.items():
                chunks.MIN_PACKED_POINTS = min_packed
                store = open_store(f"sqlite:///{tmp}/{layout}{attempt}.db")
                start = time.perf_counter()
                store.write_points("train.loss", {"job": "bench"}, ts, values, steps=steps)
                best[layout, "write"] = min(best[layout, "write"], time.perf_counter() - start)
                if layout in stores:
                    stores[layout].close()
                stores[layout] = store
        for _ in range(5):
            for layout, store in stores.items():
                start = time.perf_counter()
                assert len(store.read_points("train.loss", {"job": "bench"})) == N
                best[layout, "read"] = min(best[layout, "read"], time.perf_counter() - start)
        stored, on_disk = {}, {}
        for layout, store in stores.items():
            cells = [c[0].value for row in store._points.scan(columns=["p"]) for c in row.cells["p"].values()]
            stored[layout] = sum(map(len, cells)) / N
            assert stored[layout] > 0, f"no {layout} cells in family p"
            store.backend._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            on_disk[layout] = store.backend.file_bytes() / N
    finally:
        chunks.MIN_PACKED_POINTS = packed
        for store in stores.values():
            store.close()
    speed = {key: N / seconds for key, seconds in best.items()}
    return [
        Result(SECTION, "store write_points 1M (bulk): raw layout", speed["raw", "write"], "points/s",
               note=f"{stored['raw']:.1f} bytes/point in cells, {on_disk['raw']:.1f} in the file"),
        Result(SECTION, "store write_points 1M (bulk): ours", speed["ours", "write"], "points/s", ">= 2,000,000",
               speed["ours", "write"] >= 2_000_000,
               f"{stored['ours']:.1f} bytes/point in cells, {on_disk['ours']:.1f} in the file, "
               f"{speed['ours', 'write'] / speed['raw', 'write']:.2f}x raw"),
        Result(SECTION, "store read_points 1M: raw layout", speed["raw", "read"], "points/s"),
        Result(SECTION, "store read_points 1M: ours", speed["ours", "read"], "points/s", ">= 10,000,000",
               speed["ours", "read"] >= 10_000_000, f"{speed['ours', 'read'] / speed['raw', 'read']:.2f}x raw"),
    ]


def _expired_store(path: Path, old_file: bool):
    """A store with 1M points 3 days old under a 1-day retention, and a live series."""
    if old_file:  # as created before auto_vacuum was set
        db = sqlite3.connect(path)
        db.execute("PRAGMA page_size = 16384")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE tablewatch_tables (name TEXT PRIMARY KEY, families TEXT NOT NULL)")
        db.close()
    store = open_store(f"sqlite:///{path}", retention_s={"points": DAY})
    now = time.time()
    ts, values, steps = _store_data()
    store.write_points("train.loss", {"job": "old"}, ts - ts[0] + now - 3 * DAY, values, steps=steps)
    store.write_points("train.loss", {"job": "live"}, now - 600 + np.arange(600.0), np.arange(600.0))
    store.backend._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def _while_reading(path: Path, work: Callable[[], None]) -> tuple[float, float]:
    """(seconds ``work`` took, longest read of a concurrent reader meanwhile, ms).
    The reader's first read (opening, caches) is before ``work`` starts."""
    longest = [0.0]
    ready, done = threading.Event(), threading.Event()

    def reader() -> None:
        with open_store(f"sqlite:///{path}") as other:
            other.read_points("train.loss", {"job": "live"})
            ready.set()
            while not done.is_set():
                start = time.perf_counter()
                assert len(other.read_points("train.loss", {"job": "live"})) == 600
                longest[0] = max(longest[0], time.perf_counter() - start)

    thread = threading.Thread(target=reader)
    thread.start()
    ready.wait()
    start = time.perf_counter()
    work()
    took = time.perf_counter() - start
    done.set()
    thread.join()
    return took, 1000 * longest[0]


def bench_vacuum(tmp: Path) -> list[Result]:
    results = []
    for label, old_file, vacuum in (
        ("file created before auto_vacuum, compact", True, False),
        ("file created before auto_vacuum, compact --vacuum", True, True),
        ("new file (incremental auto_vacuum), compact", False, False),
    ):
        path = tmp / f"expired-{old_file}-{vacuum}.db"
        store = _expired_store(path, old_file)
        before = store.backend.file_bytes()

        def work() -> None:
            store.compact()
            if vacuum:
                store.backend.vacuum()

        idle = _while_reading(path, lambda: time.sleep(0.2))[1]  # the same reader with nothing else running
        took, longest = _while_reading(path, work)
        after = store.backend.file_bytes()
        assert len(store.read_points("train.loss", {"job": "live"})) == 600
        store.close()
        shrinks = not old_file or vacuum
        results.append(Result(
            SECTION, f"SQLite file after 1M points expired: {label}", after / 1e6, "MB",
            "< 1 MB" if shrinks else "", (after < 1e6) if shrinks else None,
            f"{before / 1e6:.1f} MB before; took {took:.2f} s; longest concurrent read {longest:.0f} ms, "
            f"{idle:.0f} ms with nothing running",
        ))
    return results


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        return bench_candidates() + bench_store(Path(tmp)) + bench_vacuum(Path(tmp))
