"""Timestamps in, timestamps out: everything is UTC, stored as int64
microseconds since the Unix epoch.

Accepted: epoch seconds (int or float, scalar or array), ``datetime`` (naive
means UTC), numpy ``datetime64`` of any unit, pandas Timestamps/DatetimeIndex,
and ISO-8601 strings.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sys

import numpy as np

from tablewatch.errors import ValidationError, ValidationTypeError

US_PER_S = 1_000_000
#: Points before 1970 or from 2100 on are refused: such a timestamp is almost
#: always milliseconds or nanoseconds passed where seconds were meant.
MIN_TS_US = 0
MAX_TS_US = 4_102_444_800 * US_PER_S  # 2100-01-01T00:00:00Z


def to_us_array(ts: Any, field: str = "ts") -> np.ndarray:
    """Convert timestamps to a 1-d int64 array of epoch microseconds, checked."""
    if isinstance(ts, (int, float, np.integer, np.floating, datetime, np.datetime64, str)) and not isinstance(ts, bool):
        ts = [ts]
    pd = sys.modules.get("pandas")  # only a program that imported pandas can pass pandas objects
    if pd is not None and isinstance(ts, (pd.DatetimeIndex, pd.Series)) and ts.dtype.kind == "M":
        out = _from_pandas(ts)
    else:
        array = np.asarray(ts)
        if array.ndim != 1:
            raise ValidationError(field, ts, f"must be one-dimensional, got {array.ndim} dimensions")
        kind = array.dtype.kind
        if kind == "b":
            raise ValidationTypeError(field, ts, "booleans are not timestamps")
        if kind in "iu":
            _check_range(array.astype(np.float64) * US_PER_S, field)
            out = array.astype(np.int64) * US_PER_S
        elif kind == "f":
            if len(array) and not np.isfinite(array).all():
                bad = int(np.flatnonzero(~np.isfinite(array))[0])
                raise ValidationError(f"{field}[{bad}]", array[bad], "must be a finite number of epoch seconds")
            _check_range(array * US_PER_S, field)
            out = np.rint(array * US_PER_S).astype(np.int64)
        elif kind == "M":
            if np.isnat(array).any():
                bad = int(np.flatnonzero(np.isnat(array))[0])
                raise ValidationError(f"{field}[{bad}]", array[bad], "is NaT")
            out = array.astype("datetime64[us]").astype(np.int64)
        elif kind in "OU":
            out = _from_objects(array, field)
        else:
            raise ValidationTypeError(field, ts, f"cannot be read as timestamps (dtype {array.dtype})")
    _check_range(out, field)
    return out


def _from_pandas(ts: Any) -> np.ndarray:
    import pandas as pd

    index = pd.DatetimeIndex(ts)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("us").asi8.copy()


def _from_objects(array: np.ndarray, field: str) -> np.ndarray:
    out = np.empty(len(array), dtype=np.int64)
    for i, item in enumerate(array):
        out[i] = to_us(item, f"{field}[{i}]")
    return out


def to_us(ts: Any, field: str = "ts") -> int:
    """One timestamp as epoch microseconds, checked."""
    if isinstance(ts, bool) or ts is None:
        raise ValidationTypeError(field, ts, "must be epoch seconds, a datetime or an ISO-8601 string")
    if isinstance(ts, (int, np.integer)):
        us = int(ts) * US_PER_S
    elif isinstance(ts, (float, np.floating)):
        if not np.isfinite(ts):
            raise ValidationError(field, ts, "must be a finite number of epoch seconds")
        us = int(round(float(ts) * US_PER_S))
    elif isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        delta = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
        us = (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds
    elif isinstance(ts, np.datetime64):
        if np.isnat(ts):
            raise ValidationError(field, ts, "is NaT")
        us = int(ts.astype("datetime64[us]").astype(np.int64))
    elif isinstance(ts, str):
        import pandas as pd  # its ISO-8601 parser takes more forms than datetime.fromisoformat

        try:
            parsed = pd.Timestamp(ts)
        except (ValueError, TypeError) as e:
            raise ValidationError(field, ts, "is not an ISO-8601 timestamp") from e
        if parsed.tzinfo is None:
            parsed = parsed.tz_localize("UTC")
        return to_us(parsed.to_pydatetime(), field)
    else:
        raise ValidationTypeError(field, ts, "must be epoch seconds, a datetime or an ISO-8601 string")
    if not MIN_TS_US <= us < MAX_TS_US:
        raise ValidationError(field, ts, "must be between 1970-01-01 and 2100-01-01 UTC (epoch seconds, not ms)")
    return us


def _check_range(us: np.ndarray, field: str) -> None:
    if len(us) == 0:
        return
    bad = (us < MIN_TS_US) | (us >= MAX_TS_US)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"{field}[{i}]", us[i] / US_PER_S, "must be between 1970-01-01 and 2100-01-01 UTC (epoch seconds, not ms)"
        )


def time_range(start: Any, end: Any) -> tuple[int, int]:
    """A half-open read range ``[start, end)`` in µs; None is unbounded."""
    return (0 if start is None else to_us(start, "start"), MAX_TS_US if end is None else to_us(end, "end"))


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US_PER_S, tz=timezone.utc)


def now_us() -> int:
    return int(datetime.now(timezone.utc).timestamp() * US_PER_S)
