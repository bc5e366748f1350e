"""The chunk codec: lossless to the bit, deterministic, small, and still reading
the raw layout that stores written before compression hold."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tablewatch.store import chunks, open_store
from tablewatch.store.table import RowMutation, SetCell

T0_US = 1_790_000_000_000_000  # 2026-09-21 UTC
N = 65_536
rng = np.random.default_rng(11)
REGULAR = T0_US + np.arange(N) * 1_000_000  # 1 Hz
STEPS = np.arange(N)


def loss_curve_float32(n: int = N) -> np.ndarray:
    """What a training loop logs: ``loss.item()`` of a float32 tensor (a
    float64 holding a float32), a decaying curve with 1 % noise."""
    t = np.arange(n)
    noisy = 2.5 * np.exp(-t / 20_000) + 0.3 + 0.01 * rng.normal(size=n)
    return noisy.astype(np.float32).astype(np.float64)


def latency_4_digits(n: int = N) -> np.ndarray:
    """A latency in seconds rounded to 0.1 ms (4 decimal digits), around 20 ms."""
    return np.round(rng.lognormal(np.log(0.02), 0.3, n), 4)


def latency_3_significant_digits(n: int = N) -> np.ndarray:
    """A latency in seconds from 1 ms to 3 s rounded to 3 significant digits
    (0.00123, 0.0456, 2.35): the double nearest each decimal."""
    measured = 10 ** rng.uniform(-3, 0.5, n)
    scale = 10.0 ** (2 - np.floor(np.log10(measured)))
    return np.round(measured * scale) / scale


def assert_same_bits(got: tuple, ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> None:
    got_ts, got_values, got_steps = got
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_values.view(np.uint64), np.asarray(values, dtype=np.float64).view(np.uint64))
    if steps is None:
        assert got_steps is None
    else:
        np.testing.assert_array_equal(got_steps, steps)


def bytes_per_point(ts: np.ndarray, values: np.ndarray, steps: np.ndarray | None) -> float:
    _, value = chunks.encode(ts, values, steps)
    return len(value) / len(ts)


@pytest.mark.parametrize(
    "values, steps, at_most",
    [
        (loss_curve_float32(), STEPS, 3.0),  # regular ts, steps 0, 1, 2, ...
        (latency_4_digits(), None, 3.0),
        (latency_3_significant_digits(), None, 3.0),
        (np.round(20 + np.cumsum(rng.normal(size=N)) * 0.01, 2), None, 3.0),  # a slow gauge, 2 digits
        (np.full(N, 0.5), None, 0.1),
        (rng.normal(size=N), None, 10.0),  # random doubles
        (rng.normal(size=N), STEPS, 10.0),
    ],
    ids=["loss-float32", "latency-0.1ms", "latency-3-digits", "gauge-2-digits", "constant", "random", "random-with-steps"],
)
def test_round_trip_is_exact_and_small(values, steps, at_most):
    qualifier, value = chunks.encode(REGULAR, values, steps)
    assert value[0] & chunks.PACKED
    assert chunks.count_of(qualifier) == N
    assert_same_bits(chunks.decode(value), REGULAR, values, steps)
    assert len(value) / N <= at_most


def test_what_cannot_be_small_is_still_exact():
    """A float64 loss with full-precision noise has ~45 random bits a point:
    no lossless codec brings it to 3 bytes; ours keeps it under 8."""
    t = np.arange(N)
    loss = 2.5 * np.exp(-t / 20_000) + 0.3 + 0.01 * rng.normal(size=N)
    jittered = np.sort(REGULAR + rng.integers(-5_000, 5_000, N))  # 1 Hz ± 5 ms
    assert 3.0 < bytes_per_point(REGULAR, loss, STEPS) < 8.0
    assert_same_bits(chunks.decode(chunks.encode(jittered, loss, STEPS)[1]), jittered, loss, STEPS)


def test_special_values_and_extreme_integers_survive():
    n = 64
    values = rng.normal(size=n)
    values[[1, 5, 9, 13]] = [-0.0, np.inf, -np.inf, np.nan]
    values[20] = np.frombuffer(struct.pack("<Q", 0x7FF8_0000_0000_0ABC), dtype="<f8")[0]  # NaN with a payload
    values[30] = 5e-324  # smallest subnormal
    values[31] = np.finfo(np.float64).max
    ts = np.sort(rng.integers(-(2**62), 2**62, n))  # deltas that wrap around int64
    steps = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    steps[::3] = chunks.NO_STEP
    assert_same_bits(chunks.decode(chunks.encode(ts, values, steps)[1]), ts, values, steps)


def test_decimal_values_that_do_not_round_trip_fall_back_to_xor():
    decimals = np.round(rng.random(N), 3)
    _, value = chunks.encode(REGULAR, decimals, None)
    assert value[1] == chunks.DECIMAL and value[2] == 3
    decimals[N // 2] = -0.0  # a decimal zero comes back as +0.0: not exact, so XOR
    _, value = chunks.encode(REGULAR, decimals, None)
    assert value[1] == chunks.XOR
    assert_same_bits(chunks.decode(value), REGULAR, decimals, None)
    huge = np.full(N, 1e300)
    huge[::2] = 3.0
    assert_same_bits(chunks.decode(chunks.encode(REGULAR, huge, None)[1]), REGULAR, huge, None)


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(allow_nan=True, allow_infinity=True)),
    stride=st.integers(0, 10**9),
    data=st.data(),
)
def test_any_points_round_trip(values, stride, data):
    n = len(values)
    ts = T0_US + np.arange(n) * stride + np.sort(data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**6))))
    ts.sort()
    steps = data.draw(st.none() | hnp.arrays(np.int64, n))
    qualifier, value = chunks.encode(ts, values, steps)
    assert chunks.count_of(qualifier) == n
    assert_same_bits(chunks.decode(value), ts, values, steps)
    layout, body = chunks.pack_streams(ts, values, steps)  # the packed layout at every size, too
    assert_same_bits(chunks.unpack_streams(body, n, layout, steps is not None), ts, values, steps)


@settings(max_examples=60, deadline=None)
@given(
    integers=hnp.arrays(np.int64, st.integers(8, 300), elements=st.integers(-(2**53), 2**53)),
    digits=st.integers(0, chunks.MAX_DECIMAL_DIGITS),
)
def test_any_decimals_round_trip(integers, digits):
    values = integers / 10.0**digits
    ts = T0_US + np.arange(len(values)) * 1_000_000
    assert_same_bits(chunks.decode(chunks.encode(ts, values, None)[1]), ts, values, None)


def test_a_damaged_packed_chunk_is_an_error_not_wrong_points():
    _, value = chunks.encode(REGULAR, latency_4_digits(), None)
    with pytest.raises(ValueError, match="widths"):
        chunks.decode(value[:3] + bytes([3]) + value[4:])  # a ts width that does not exist
    with pytest.raises(ValueError, match="do not hold"):
        chunks.decode(value[:6] + struct.pack("<I", N + 1) + value[10:])  # one point too many
    with pytest.raises(zstandard.ZstdError):
        chunks.decode(value[:-5])  # a cut Zstandard frame


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_decode_many_gives_every_chunks_points_bit_for_bit(data):
    chunk_values, expected = [], []
    for _ in range(data.draw(st.integers(1, 12))):
        n = data.draw(st.integers(1, 80))
        ts = np.sort(data.draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**62), 2**62))))
        if data.draw(st.booleans()):
            ts = T0_US + np.arange(n) * data.draw(st.integers(0, 10**9))  # a regular stride
        values = data.draw(st.one_of([
            hnp.arrays(np.float64, n, elements=st.floats(allow_nan=True, allow_infinity=True)),
            hnp.arrays(np.int64, n, elements=st.integers(-(10**9), 10**9)).map(lambda a: a / 1000.0),
        ]))
        steps = data.draw(st.none() | hnp.arrays(np.int64, n))
        chunk_values.append(chunks.encode(ts, values, steps)[1])
        expected.append((ts, values, steps if steps is not None else np.full(n, chunks.NO_STEP, dtype=np.int64)))
    ts, values, steps, counts = chunks.decode_many(chunk_values)
    assert counts.tolist() == [len(e[0]) for e in expected]
    assert_same_bits((ts, values, steps), *(np.concatenate([e[i] for e in expected]) for i in range(3)))


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_decode_many_of_chunks_sharing_a_point_count_is_bit_for_bit(data):
    """A bulk write's full buckets: many chunks of one layout and one point
    count, decoded as 2-D blocks, among chunks of other counts and layouts."""
    shared = data.draw(st.sampled_from([8, 9, 70, 3600]))
    others = data.draw(st.lists(st.sampled_from([1, 2, 3, 9, 70, 71]), max_size=30))
    counts = data.draw(st.permutations([shared] * data.draw(st.integers(chunks.BLOCK_CHUNKS, 20)) + others))
    chunk_values, expected = [], []
    for i, n in enumerate(counts):
        start = T0_US + i * 10**10
        ts = start + (np.arange(n) * 6_000_000 if i % 3 else np.sort(rng.integers(0, 10**9, n)))
        values = rng.lognormal(0, 1, n) if i % 2 else np.round(rng.normal(size=n), 3)
        steps = np.arange(n) + i * 100 if i % 4 == 1 else None
        chunk_values.append(chunks.encode(ts, values, steps)[1])
        expected.append((ts, values, steps if steps is not None else np.full(n, chunks.NO_STEP, dtype=np.int64)))
    ts, values, steps, found = chunks.decode_many(chunk_values)
    assert found.tolist() == counts
    assert_same_bits((ts, values, steps), *(np.concatenate([e[i] for e in expected]) for i in range(3)))
    one_by_one = [chunks.decode(value) for value in chunk_values]
    assert_same_bits((ts, values, steps), *(np.concatenate([
        part[i] if part[i] is not None else np.full(len(part[0]), chunks.NO_STEP) for part in one_by_one])
        for i in range(3)))


def test_decode_many_refuses_a_damaged_chunk_like_decode():
    _, good = chunks.encode(REGULAR, latency_4_digits(), None)
    with pytest.raises(ValueError, match="layout"):
        chunks.decode_many([good, good[:3] + bytes([3]) + good[4:]])
    with pytest.raises(ValueError, match="do not hold"):
        chunks.decode_many([good, good[:6] + struct.pack("<I", N + 1) + good[10:]])


def test_encoding_is_deterministic_and_the_qualifier_hashes_the_points():
    values = loss_curve_float32()
    first = chunks.encode(REGULAR, values, STEPS)
    assert chunks.encode(REGULAR.copy(), values.copy(), STEPS.copy()) == first
    raw = bytes([chunks.HAS_STEPS]) + REGULAR.astype("<i8").tobytes() + values.tobytes() + STEPS.astype("<i8").tobytes()
    # the qualifier a store written before compression gave the same points
    assert first[0] == struct.pack(">qI", T0_US, N) + hashlib.blake2b(raw, digest_size=8).digest()
    changed = values.copy()
    changed[-1] = np.nextafter(changed[-1], 10)
    assert chunks.encode(REGULAR, changed, STEPS)[0] != first[0]


def test_small_chunks_stay_raw():
    ts, values = REGULAR[:3], np.array([1.0, 2.0, 3.0])
    _, value = chunks.encode(ts, values, None)
    assert value[0] == 0 and len(value) == 1 + 16 * 3
    assert_same_bits(chunks.decode(value), ts, values, None)


def test_a_chunk_in_the_old_raw_layout_is_read_through_the_store(tmp_path):
    """Write points, then put the same points back in the layout of stores
    written before compression (same qualifier, flags byte 1, raw arrays), and
    read them through the Store."""
    store = open_store(f"sqlite:///{tmp_path}/old.db", retention_s={"points": None})  # T0 is older than 30 days
    t0 = T0_US / 1e6
    ts = t0 + np.arange(5000) * 0.25
    values = loss_curve_float32(5000)
    store.write_points("train.loss", {"model": "old"}, ts, values, steps=np.arange(5000))
    rows = list(store._points.scan(columns=["p"]))
    rewritten = 0
    for row in rows:
        for qualifier, cells in row.cells["p"].items():
            assert cells[0].value[0] & chunks.PACKED
            ts_us, vals, steps = chunks.decode(cells[0].value)
            old = bytes([chunks.HAS_STEPS]) + ts_us.tobytes() + vals.tobytes() + steps.tobytes()
            store._points.mutate_rows([RowMutation(row.key, [SetCell("p", qualifier, old, cells[0].timestamp_ms)])])
            rewritten += 1
    assert rewritten >= 1
    assert all(c[0].value[0] == chunks.HAS_STEPS for r in store._points.scan(columns=["p"]) for c in r.cells["p"].values())
    frame = store.read_points("train.loss", {"model": "old"})
    np.testing.assert_array_equal(frame["value"].to_numpy(), values)
    assert frame["step"].tolist() == list(range(5000))
    # writing the same points again replaces the old cells (same qualifiers): no duplicates
    store.write_points("train.loss", {"model": "old"}, ts, values, steps=np.arange(5000))
    assert len(store.read_points("train.loss", {"model": "old"})) == 5000
    store.close()



def test_encode_many_gives_the_bytes_of_encode_chunk_by_chunk():
    # Raw chunks of 1 to 7 points (with and without steps) are built a column
    # at a time, packed ones one by one: the cells must be byte for byte those
    # of encode, so a replay through either path replaces, never duplicates.
    rng_many = np.random.default_rng(5)
    ts = T0_US + np.sort(rng_many.integers(0, 10**10, 400))
    values = rng_many.normal(size=400)
    values[3], values[4] = -0.0, np.nan
    steps = rng_many.integers(-5, 5, 400)
    starts = np.unique(np.r_[0, rng_many.integers(1, 400, 120)])
    stops = np.r_[starts[1:], 400]
    has_steps = rng_many.random(len(starts)) < 0.5
    qualifiers, cells = chunks.encode_many(ts, values, steps, starts, stops, has_steps)
    assert {int(k) for k in stops - starts} & {1, 2, 7} and (stops - starts).max() >= chunks.MIN_PACKED_POINTS
    for i, (lo, hi) in enumerate(zip(starts, stops)):
        assert (qualifiers[i], cells[i]) == chunks.encode(ts[lo:hi], values[lo:hi], steps[lo:hi] if has_steps[i] else None)
    ones = np.arange(1000)
    assert tuple(map(list, chunks.encode_many(ts, values, None, ones[:400], ones[1:401]))) == tuple(
        map(list, zip(*(chunks.encode(ts[i:i + 1], values[i:i + 1], None) for i in range(400)))))
