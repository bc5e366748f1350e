"""The row-key codec.

Point rows (one row per series per time bucket)::

    salt (1 byte) | series id (8 bytes) | bucket index (4 bytes, big-endian)

Task-run rows (one row per attempt)::

    salt (1) | task id (8) | day index (4) | inverted start µs (8) | run id hash (8) | attempt (2)

The salt leads every key, so no key starts with a time or a sequential id.
It is ``(series offset + bucket index) mod salt_buckets``: consecutive buckets of
one series go to consecutive salt buckets. A single hot series therefore
spreads its writes evenly over every salt bucket as time passes (salting by
series alone, as OpenTSDB does, pins it to one), yet a reader computes the
exact key of every bucket of a time range without fanning out blind scans.
Within one salt and one series, byte order is time order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from tablewatch.errors import ValidationError
from tablewatch.store.names import SERIES_ID_BYTES

US_PER_S = 1_000_000
DAY_S = 86_400
DAY_US = DAY_S * US_PER_S
MAX_SALT_BUCKETS = 256
POINT_KEY_BYTES = 1 + SERIES_ID_BYTES + 4
TASK_KEY_BYTES = 1 + SERIES_ID_BYTES + 4 + 8 + 8 + 2
_INT63 = 2**63 - 1
_BUCKET = struct.Struct(">I")
_TASK_TAIL = struct.Struct(">QQH")


def task_id(pipeline: str, task: str) -> bytes:
    return hashlib.blake2b(f"{pipeline}\x00{task}".encode(), digest_size=SERIES_ID_BYTES).digest()


def run_hash(run_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class KeyCodec:
    """Row keys for one store; ``salt_buckets`` and ``bucket_seconds`` are fixed
    when the store's tables are created and recorded with them."""

    salt_buckets: int = 16
    bucket_seconds: int = 3600

    def __post_init__(self) -> None:
        if not 1 <= self.salt_buckets <= MAX_SALT_BUCKETS:
            raise ValidationError("salt_buckets", self.salt_buckets, f"must be 1 to {MAX_SALT_BUCKETS}")
        if self.bucket_seconds < 1 or DAY_S % self.bucket_seconds:
            raise ValidationError("bucket_seconds", self.bucket_seconds, "must divide a day (86400 s) evenly")

    @property
    def bucket_us(self) -> int:
        return self.bucket_seconds * US_PER_S

    def salt(self, entity_id: bytes, bucket: int) -> int:
        offset = int.from_bytes(entity_id[:4], "big")
        return (offset + bucket) % self.salt_buckets

    def bucket_of(self, ts_us: int) -> int:
        return ts_us // self.bucket_us

    def point_key(self, sid: bytes, bucket: int) -> bytes:
        return bytes([self.salt(sid, bucket)]) + sid + _BUCKET.pack(bucket)

    def decode_point_key(self, key: bytes) -> tuple[int, bytes, int]:
        """(salt, series id, bucket index)."""
        if len(key) != POINT_KEY_BYTES:
            raise ValidationError("row key", key, f"is not a {POINT_KEY_BYTES}-byte point key")
        return key[0], key[1 : 1 + SERIES_ID_BYTES], _BUCKET.unpack(key[1 + SERIES_ID_BYTES :])[0]

    def point_keys(self, sid: bytes, start_us: int, end_us: int) -> list[bytes]:
        """Keys of every bucket overlapping [start_us, end_us)."""
        if end_us <= start_us:
            return []
        first, last = self.bucket_of(start_us), self.bucket_of(end_us - 1)
        return [self.point_key(sid, b) for b in range(first, last + 1)]

    def point_keys_on_days(self, sid: bytes, days: Iterable[int], start_us: int, end_us: int) -> list[bytes]:
        """Keys of every bucket overlapping [start_us, end_us) on ``days`` (the
        days the day index says have data)."""
        keys = []
        for day in days:
            keys += self.point_keys(sid, max(start_us, day * DAY_US), min(end_us, (day + 1) * DAY_US))
        return keys

    def point_ranges(self, sid: bytes, first: int, last: int) -> list[tuple[bytes, bytes]]:
        """Key ranges holding exactly the buckets ``first`` to ``last`` (both
        included) of a series, one per salt: within a salt and a series, key
        order is time order, and the salt moves on by one with each bucket."""
        ranges = []
        for bucket in range(first, min(first + self.salt_buckets, last + 1)):
            final = bucket + (last - bucket) // self.salt_buckets * self.salt_buckets
            ranges.append((self.point_key(sid, bucket), self.point_key(sid, final) + b"\x00"))  # the next key after it
        return ranges

    # -- task runs: bucketed by day ------------------------------------------------

    def task_prefix(self, tid: bytes, day: int) -> bytes:
        return bytes([self.salt(tid, day)]) + tid + _BUCKET.pack(day)

    def task_key(self, tid: bytes, time_us: int, run_id: str, attempt: int) -> bytes:
        day = time_us // DAY_US
        return self.task_prefix(tid, day) + _TASK_TAIL.pack(_INT63 - time_us, run_hash(run_id), attempt)

    def task_range(self, tid: bytes, day: int, start_us: int, end_us: int) -> tuple[bytes, bytes]:
        """Key range of the runs of one task and day with start_us <= time < end_us."""
        prefix = self.task_prefix(tid, day)
        low = prefix + struct.pack(">Q", _INT63 - end_us + 1)
        high = prefix + struct.pack(">Q", _INT63 - start_us + 1)
        return low, high


def day_of(ts_us: int) -> int:
    return ts_us // DAY_US
