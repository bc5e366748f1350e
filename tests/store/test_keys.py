"""Property-based tests of the row-key codec."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablewatch.store.keys import MAX_SALT_BUCKETS, POINT_KEY_BYTES, TASK_KEY_BYTES, KeyCodec, task_id
from tablewatch.store.names import MAX_TAG_VALUE_CHARS, series_id
from tablewatch.store.table import MAX_ROW_KEY_BYTES
from tablewatch.store.timestamps import MAX_TS_US

metrics = st.from_regex(r"[a-z][a-z0-9_.]{0,40}", fullmatch=True)
tag_dicts = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                            st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable()), max_size=5)
codecs = st.builds(KeyCodec, st.integers(1, MAX_SALT_BUCKETS), st.sampled_from([60, 300, 600, 3600, 86400]))
times = st.integers(0, MAX_TS_US - 1)


@given(codecs, metrics, tag_dicts, times)
def test_point_key_round_trip_and_width(codec, metric, tags, ts_us):
    sid = series_id(metric, tags)
    bucket = codec.bucket_of(ts_us)
    key = codec.point_key(sid, bucket)
    assert len(key) == POINT_KEY_BYTES
    salt, decoded_sid, decoded_bucket = codec.decode_point_key(key)
    assert (decoded_sid, decoded_bucket) == (sid, bucket)
    assert salt == codec.salt(sid, bucket) < codec.salt_buckets


@given(codecs, metrics, tag_dicts, times, times)
def test_byte_order_is_time_order_within_a_series_and_salt(codec, metric, tags, a, b):
    sid = series_id(metric, tags)
    key_a, key_b = codec.point_key(sid, codec.bucket_of(a)), codec.point_key(sid, codec.bucket_of(b))
    if key_a[0] == key_b[0]:
        assert (key_a < key_b) == (codec.bucket_of(a) < codec.bucket_of(b))


@given(codecs, metrics, tag_dicts, st.integers(0, 10**6))
def test_consecutive_buckets_of_one_series_visit_every_salt(codec, metric, tags, first_bucket):
    sid = series_id(metric, tags)
    salts = {codec.point_key(sid, b)[0] for b in range(first_bucket, first_bucket + codec.salt_buckets)}
    assert salts == set(range(codec.salt_buckets))


@given(codecs, st.text(min_size=1, max_size=MAX_TAG_VALUE_CHARS), st.text(min_size=1, max_size=MAX_TAG_VALUE_CHARS),
       times, times, st.text(min_size=1, max_size=MAX_TAG_VALUE_CHARS), st.integers(1, 65535))
@settings(max_examples=200)
def test_task_keys_fixed_width_newest_first_and_in_their_range(codec, pipeline, task, a, b, run_id, attempt):
    tid = task_id(pipeline, task)
    key_a = codec.task_key(tid, a, run_id, attempt)
    key_b = codec.task_key(tid, b, run_id, attempt)
    assert len(key_a) == TASK_KEY_BYTES <= MAX_ROW_KEY_BYTES
    day = a // 86_400_000_000
    if b // 86_400_000_000 == day and a != b:
        assert (key_a < key_b) == (a > b)  # newest first within a day
    low, high = codec.task_range(tid, day, min(a, b), max(a, b) + 1)
    assert low <= key_a < high
    inverted = struct.unpack(">Q", key_a[13:21])[0]
    assert inverted == 2**63 - 1 - a


@given(metrics, tag_dicts, tag_dicts)
def test_series_id_depends_on_tags_not_their_order(metric, tags, other):
    reordered = dict(reversed(list(tags.items())))
    assert series_id(metric, tags) == series_id(metric, reordered)
    if other != tags:
        assert series_id(metric, tags) != series_id(metric, other)


@settings(max_examples=50, deadline=None)
@given(codecs, metrics, st.integers(0, 10**6), st.integers(0, 300))
def test_point_ranges_hold_exactly_the_buckets_asked_for(codec, metric, first, count):
    sid, other = series_id(metric, {}), series_id(metric + "x", {})
    last = first + count
    ranges = codec.point_ranges(sid, first, last)
    assert len(ranges) == min(codec.salt_buckets, count + 1)
    near = [codec.point_key(s, b) for s in (sid, other) for b in range(max(0, first - 40), last + 40)]
    inside = {key for key in near if any(low <= key < high for low, high in ranges)}
    assert inside == {codec.point_key(sid, b) for b in range(first, last + 1)}


def test_packed_bytes_reads_as_a_list_of_byte_strings():
    from tablewatch.store.table import PackedBytes

    packed = PackedBytes(b"aabbccdd", 2)
    assert list(packed) == [b"aa", b"bb", b"cc", b"dd"] and len(packed) == 4
    assert (packed[0], packed[-1]) == (b"aa", b"dd")
    assert packed[1:3] == PackedBytes(b"bbcc", 2) and packed[3:9].blob == b"dd" and packed[3:1].blob == b""
    assert packed[::2] == [b"aa", b"cc"]
    with pytest.raises(IndexError):
        packed[4]
    with pytest.raises(ValueError, match="width"):
        PackedBytes(b"abc", 2)
    assert PackedBytes.of([b"xy", b"zw"]) == PackedBytes(b"xyzw", 2)
    assert PackedBytes.of([b"xy", b"z"]) is None and PackedBytes.of([b"", b""]) is None and PackedBytes.of([]) is None
