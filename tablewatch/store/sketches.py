"""Distribution sketches: mergeable summaries of a model's features and
predictions per time window, so that the drift between any two windows can be
computed later without keeping the raw values.

**Numeric values** go into a :class:`NumericSketch`: a log-bucketed histogram
with a fixed *relative* accuracy (the DDSketch construction). With
``gamma = (1 + alpha) / (1 - alpha)``, bin ``i`` holds the values ``x`` with
``gamma**(i-1) < |x| <= gamma**i`` (one bin set for positive values, one for
negative values, and a zero count); every bin is represented by
``2 * gamma**i / (gamma + 1)``, which is within ``alpha`` (relative) of every
value in it. Why this and not fixed-edge histograms or a t-digest:

- merging is exact: bins are a pure function of the value, so the merge of two
  sketches is the bin-wise sum of counts, and merging the sketches of two halves
  of a data set gives the same bins, count, min and max as sketching the whole
  (the sum is a float sum, equal up to rounding);
- quantiles are accurate to ``alpha`` relative error whatever the range or shape
  of the data (latencies, probabilities, prices), with no edges to choose
  before seeing the data — fixed edges are wrong for one feature or another;
- a t-digest merges only approximately and its result depends on merge order.

``alpha`` defaults to 0.01: ``quantile(q)`` is within 1 % of the exact order
statistic ``x[floor(q * (n - 1))]`` of the sorted values (numpy's ``"lower"``
method). A sketch of values spanning 1e-3..1e6 keeps about 1,000 bins (a few
KB). At most ``MAX_BIN_SPAN`` consecutive bins are kept per sign: when values
span more (a factor of ~1e17 at alpha = 0.01), the bins of the *smallest*
magnitudes are folded into the lowest kept bin; that rule depends only on the
bins present, so merges stay exact. ``cdf``, ``histogram`` and ``bins`` give
what PSI, Kolmogorov-Smirnov and Wasserstein distances need (each value is
placed at its bin's representative, within ``alpha`` of where it was).

**Categorical values** (strings, booleans) go into a :class:`CategoricalSketch`:
counts per category. At most ``max_categories`` (default 100) are kept, the most
frequent (ties by name); the others are folded into ``"__other__"``. While a
sketch and every sketch merged into it have at most ``max_categories``
categories, merging is exact; beyond that the total stays exact, a kept
category's count is never over-counted (part of it may have been folded into
``"__other__"`` by a partial sketch that had too many categories).

A :class:`DistributionSketch` holds both (a feature that sends numbers and
strings keeps both) plus the count of missing values (None, NaN, ±inf).

**Storage** (table ``tw_sketches``, written and read through
:class:`~tablewatch.store.timeseries.Store`): one row per (model, feature, time
bucket), keyed like points — ``salt | sketch id | bucket`` with the sketch id an
8-byte hash of (model, feature), so one busy feature's writes still spread over
every salt bucket. Each writer (an accumulator entry in one process, see
:class:`SketchRecord`) owns one cell of the row, qualifier ``window start µs |
writer id``, and rewrites it with its cumulative sketch of the window; the cell
timestamp is ``window start ms + seq`` (seq counts the writer's emissions), so a
newer emission supersedes an older one, and an older one replayed late (from a
disk spool) stays hidden behind it. Replaying the same record writes the same
cell: writes are idempotent. Reads merge every writer's cell. Index rows in the
same table (``INDEX_PREFIX``: never a salted key, and holding only the ``meta``
and ``days`` families) list the sketched (model, feature) pairs and the days that
have sketches, under the sketches' own retention.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store.dayindex import DayIndex
from tablewatch.store.keys import DAY_S, KeyCodec, day_of
from tablewatch.store.names import MAX_TAG_VALUE_CHARS, SERIES_ID_BYTES, check_encodable
from tablewatch.store.table import GCPolicy, Row, RowMutation, SetCell, Table
from tablewatch.store.timestamps import MAX_TS_US, MIN_TS_US, time_range, us_to_datetime

DEFAULT_ALPHA = 0.01
MAX_BIN_SPAN = 2048
DEFAULT_MAX_CATEGORIES = 100
MAX_CATEGORY_CHARS = 256
OTHER = "__other__"
PREDICTION = "__prediction__"
ENCODING_VERSION = 1
#: Index rows of ``tw_sketches`` start with this; salted keys never do in a way
#: a scan could confuse (index rows are read with the ``meta`` family only).
INDEX_PREFIX = b"\xff\xffsketch-index\x00"
WRITER_BYTES = 8
_QUALIFIER = struct.Struct(">q")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# -- numeric ------------------------------------------------------------------------------------


class NumericSketch:
    """A log-bucketed histogram of numbers with relative accuracy ``alpha``
    (see the module docstring). Not thread-safe on its own."""

    __slots__ = ("alpha", "gamma", "_log_gamma", "count", "sum", "min", "max", "zeros", "positive", "negative")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValidationError("alpha", alpha, "must be a number between 0 and 1 (exclusive)")
        self.alpha = float(alpha)
        self.gamma = (1 + self.alpha) / (1 - self.alpha)
        self._log_gamma = math.log(self.gamma)
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zeros = 0
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}

    # -- adding ---------------------------------------------------------------

    def add(self, value: float) -> None:
        """Add one finite number (NaN and ±inf raise: callers count them as missing)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValidationError("value", value, "must be finite (count NaN and ±inf as missing)")
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value != 0:
            bins = self.positive if value > 0 else self.negative
            i = math.ceil(math.log(abs(value)) / self._log_gamma)
            known = bins.get(i)
            bins[i] = (known or 0) + 1
            if known is None:
                _collapse(bins)
        else:
            self.zeros += 1

    def add_many(self, values: Any) -> int:
        """Add an array of numbers (vectorised); NaN and ±inf are skipped.
        Returns how many were skipped."""
        array = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(array)
        skipped = len(array) - int(np.count_nonzero(finite))
        if skipped:
            array = array[finite]
        if not len(array):
            return skipped
        self.count += len(array)
        self.sum += float(array.sum())
        self.min = min(self.min, float(array.min()))
        self.max = max(self.max, float(array.max()))
        self.zeros += int(np.count_nonzero(array == 0))
        for bins, part in ((self.positive, array[array > 0]), (self.negative, -array[array < 0])):
            if len(part):
                indexes, counts = np.unique(np.ceil(np.log(part) / self._log_gamma).astype(np.int64), return_counts=True)
                for i, n in zip(indexes.tolist(), counts.tolist()):
                    bins[i] = bins.get(i, 0) + n
                _collapse(bins)
        return skipped

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Add ``other``'s values into this sketch (exact); returns self."""
        if not isinstance(other, NumericSketch):
            raise ValidationTypeError("other", other, "must be a NumericSketch")
        if other.alpha != self.alpha:
            raise ValidationError("alpha", other.alpha, f"cannot merge sketches of different accuracy ({self.alpha})")
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.zeros += other.zeros
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for i, n in theirs.items():
                mine[i] = mine.get(i, 0) + n
            _collapse(mine)
        return self

    def copy(self) -> NumericSketch:
        twin = NumericSketch(self.alpha)
        twin.count, twin.sum, twin.min, twin.max, twin.zeros = self.count, self.sum, self.min, self.max, self.zeros
        twin.positive, twin.negative = dict(self.positive), dict(self.negative)
        return twin

    # -- reading --------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def bins(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, counts) in ascending order of value: each bin's
        representative value (clamped to [min, max]) and its count."""
        if not self.count:
            return np.array([], dtype=np.float64), np.array([], dtype=np.int64)
        # vectorised: drift tests call this for every sketch they compare
        neg = sorted(self.negative.items(), reverse=True)
        pos = sorted(self.positive.items())
        scale = 2.0 / (self.gamma + 1.0)
        values = np.concatenate([
            -scale * np.exp(np.array([i for i, _ in neg], dtype=np.float64) * self._log_gamma),
            [0.0] if self.zeros else [],
            scale * np.exp(np.array([i for i, _ in pos], dtype=np.float64) * self._log_gamma),
        ])
        counts = [n for _, n in neg] + ([self.zeros] if self.zeros else []) + [n for _, n in pos]
        return np.clip(values, self.min, self.max), np.array(counts, dtype=np.int64)

    def _value(self, i: int) -> float:
        return 2.0 * math.exp(i * self._log_gamma) / (self.gamma + 1.0)

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        """Values at quantiles ``qs`` (each in [0, 1]): within ``alpha`` relative
        error of the exact order statistic ``x[floor(q * (n - 1))]``; NaN when empty."""
        q = np.asarray(qs, dtype=np.float64)
        if q.ndim != 1 or len(q) and (np.isnan(q).any() or q.min() < 0 or q.max() > 1):
            raise ValidationError("q", qs, "quantiles must be numbers between 0 and 1")
        if not self.count:
            return np.full(len(q), math.nan)
        values, counts = self.bins()
        cumulative = np.cumsum(counts)
        ranks = np.floor(q * (self.count - 1))
        found = values[np.searchsorted(cumulative, ranks, side="right")]
        found[q == 0] = self.min
        found[q == 1] = self.max
        return found

    def quantile(self, q: float) -> float:
        return float(self.quantiles([q])[0])

    def cdf(self, x: Any) -> np.ndarray | float:
        """Fraction of values <= x (each value placed at its bin's representative)."""
        scalar = np.ndim(x) == 0
        points = np.atleast_1d(np.asarray(x, dtype=np.float64))
        if not self.count:
            out = np.full(len(points), math.nan)
        else:
            values, counts = self.bins()
            cumulative = np.r_[0, np.cumsum(counts)]
            out = cumulative[np.searchsorted(values, points, side="right")] / self.count
        return float(out[0]) if scalar else out

    def histogram(self, edges: Sequence[float]) -> np.ndarray:
        """Counts per interval ``[edges[k], edges[k+1])`` (the last one closed),
        numpy.histogram style; values outside the edges are not counted."""
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
            raise ValidationError("edges", edges.tolist(), "must be at least two increasing numbers")
        values, counts = self.bins()
        return np.histogram(values, bins=edges, weights=counts)[0].astype(np.int64)

    # -- wire form ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alpha": self.alpha, "count": self.count}
        if self.count:
            out.update(sum=self.sum, min=self.min, max=self.max, zeros=self.zeros,
                       positive=_pack_bins(self.positive), negative=_pack_bins(self.negative))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSketch:
        sketch = cls(data.get("alpha", DEFAULT_ALPHA))
        count = data.get("count", 0)
        if count:
            sketch.count = _count(count, "numeric.count")
            sketch.sum = float(data["sum"])
            sketch.min, sketch.max = float(data["min"]), float(data["max"])
            sketch.zeros = _count(data.get("zeros", 0), "numeric.zeros")
            sketch.positive = _unpack_bins(data.get("positive"), "numeric.positive")
            sketch.negative = _unpack_bins(data.get("negative"), "numeric.negative")
            if sketch.zeros + sum(sketch.positive.values()) + sum(sketch.negative.values()) != sketch.count:
                raise ValidationError("numeric.count", count, "does not match the bin counts")
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericSketch):
            return NotImplemented
        return (self.alpha, self.count, self.min, self.max, self.zeros, self.positive, self.negative) == (
            other.alpha, other.count, other.min, other.max, other.zeros, other.positive, other.negative
        ) and math.isclose(self.sum, other.sum, rel_tol=1e-9, abs_tol=1e-9)

    def __repr__(self) -> str:
        if not self.count:
            return f"NumericSketch(alpha={self.alpha}, empty)"
        return (f"NumericSketch(alpha={self.alpha}, count={self.count}, min={self.min:g}, "
                f"median={self.quantile(0.5):g}, max={self.max:g})")


def _collapse(bins: dict[int, int]) -> None:
    """Fold bins more than MAX_BIN_SPAN below the highest one into the lowest
    kept bin. A function of the bins present only (index i goes to
    max(i, top - MAX_BIN_SPAN + 1)), so collapsing commutes with merging."""
    if not bins:
        return
    floor = max(bins) - MAX_BIN_SPAN + 1
    if min(bins) >= floor:
        return
    low = [i for i in bins if i < floor]
    bins[floor] = bins.get(floor, 0) + sum(bins.pop(i) for i in low)


def _pack_bins(bins: Mapping[int, int]) -> list[list[int]]:
    """[[first index, index deltas...], [counts...]]: compact in JSON."""
    if not bins:
        return [[], []]
    indexes = sorted(bins)
    return [[indexes[0]] + [b - a for a, b in zip(indexes, indexes[1:])], [bins[i] for i in indexes]]


def _unpack_bins(packed: Any, where: str) -> dict[int, int]:
    if not packed:
        return {}
    try:
        deltas, counts = packed
        if len(deltas) != len(counts):
            raise ValueError("indexes and counts differ in length")
        # checked in bulk: reading a week of hourly sketches decodes thousands of these
        if not counts:
            return {}
        if not set(map(type, deltas)) <= {int}:
            raise ValueError("indexes must be integers")
        if not set(map(type, counts)) <= {int} or min(counts) < 0:
            raise ValueError("counts must be non-negative integers")
        return dict(zip(itertools.accumulate(deltas), counts))
    except (TypeError, ValueError) as e:
        raise ValidationError(where, packed, f"is not a packed bin list ({e})") from e


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(where, value, "must be a non-negative integer")
    return value


# -- categorical ----------------------------------------------------------------------------------


class CategoricalSketch:
    """Counts per category, at most ``max_categories`` kept (see the module
    docstring for what folding into ``"__other__"`` means for merges)."""

    __slots__ = ("max_categories", "counts", "_tracked_limit")

    def __init__(self, max_categories: int = DEFAULT_MAX_CATEGORIES) -> None:
        if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
            raise ValidationError("max_categories", max_categories, "must be an integer >= 1")
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        # While adding, a few times more categories than kept are tracked so
        # that the ones finally kept are the frequent ones, not the first ones.
        self._tracked_limit = 8 * max_categories

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def add(self, category: Any, n: int = 1) -> None:
        """Count ``category`` (named by :func:`category_name`) ``n`` times."""
        name = category_name(category)
        counts = self.counts
        if name in counts:
            counts[name] += n
            return
        if len(counts) >= self._tracked_limit:
            self.fold()
            counts = self.counts
        counts[name] = counts.get(name, 0) + n

    def fold(self) -> None:
        """Keep the ``max_categories`` most frequent categories (ties: by name),
        folding the rest into ``"__other__"`` (which counts as one of them)."""
        if len(self.counts) <= self.max_categories:
            return
        other = self.counts.pop(OTHER, 0)
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        keep = self.max_categories - 1
        other += sum(n for _, n in ranked[keep:])
        self.counts = dict(ranked[:keep])
        self.counts[OTHER] = other

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        if not isinstance(other, CategoricalSketch):
            raise ValidationTypeError("other", other, "must be a CategoricalSketch")
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.fold()
        return self

    def copy(self) -> CategoricalSketch:
        twin = CategoricalSketch(self.max_categories)
        twin.counts = dict(self.counts)
        return twin

    def frequencies(self) -> dict[str, float]:
        """Share of each category (summing to 1), most frequent first."""
        total = self.count
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return {name: n / total for name, n in ranked} if total else {}

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        self.fold()
        return {"max_categories": self.max_categories, "counts": dict(sorted(self.counts.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalSketch:
        sketch = cls(data.get("max_categories", DEFAULT_MAX_CATEGORIES))
        counts = data.get("counts", {})
        if not isinstance(counts, Mapping):
            raise ValidationTypeError("categorical.counts", counts, "must be an object of counts")
        sketch.counts = {str(k): _count(v, f"categorical.counts[{k!r}]") for k, v in counts.items()}
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalSketch):
            return NotImplemented
        return self.max_categories == other.max_categories and self.counts == other.counts

    def __repr__(self) -> str:
        return f"CategoricalSketch(count={self.count}, top={self.top(3)})"


def category_name(value: Any) -> str:
    """How a categorical value is named: booleans as ``true``/``false``, the
    rest as ``str()``, cut to ``MAX_CATEGORY_CHARS``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    name = value if isinstance(value, str) else str(value)
    return name[:MAX_CATEGORY_CHARS]


# -- both -------------------------------------------------------------------------------------------


@dataclass
class DistributionSketch:
    """The distribution of one feature (or the prediction) over a window:
    numbers in ``numeric``, strings and booleans in ``categorical``, and the
    count of missing values (None, NaN, ±inf)."""

    numeric: NumericSketch = field(default_factory=NumericSketch)
    categorical: CategoricalSketch = field(default_factory=CategoricalSketch)
    missing: int = 0

    @classmethod
    def create(cls, alpha: float = DEFAULT_ALPHA, max_categories: int = DEFAULT_MAX_CATEGORIES) -> DistributionSketch:
        return cls(NumericSketch(alpha), CategoricalSketch(max_categories))

    @property
    def kind(self) -> str:
        """``"numeric"``, ``"categorical"`` (whichever holds more values) or ``"empty"``."""
        if not self.numeric.count and not self.categorical.counts:
            return "empty"
        return "numeric" if self.numeric.count >= self.categorical.count else "categorical"

    @property
    def count(self) -> int:
        """Values seen, missing ones included."""
        return self.numeric.count + self.categorical.count + self.missing

    def add(self, value: Any) -> None:
        """Add one value: numbers to ``numeric``, str/bool to ``categorical``,
        None/NaN/±inf to ``missing``. Anything else raises ValidationTypeError."""
        kind = value_kind(value)
        if kind == "numeric":
            self.numeric.add(value)
        elif kind == "categorical":
            self.categorical.add(value)
        else:
            self.missing += 1

    def merge(self, other: DistributionSketch) -> DistributionSketch:
        """Add ``other`` into this sketch; returns self."""
        if not isinstance(other, DistributionSketch):
            raise ValidationTypeError("other", other, "must be a DistributionSketch")
        self.numeric.merge(other.numeric)
        self.categorical.merge(other.categorical)
        self.missing += other.missing
        return self

    def copy(self) -> DistributionSketch:
        return DistributionSketch(self.numeric.copy(), self.categorical.copy(), self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"v": ENCODING_VERSION, "numeric": self.numeric.to_dict(),
                "categorical": self.categorical.to_dict(), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Any) -> DistributionSketch:
        if not isinstance(data, Mapping):
            raise ValidationTypeError("sketch", data, "must be an object")
        if data.get("v", ENCODING_VERSION) != ENCODING_VERSION:
            raise ValidationError("sketch.v", data.get("v"), f"unknown sketch encoding (this is {ENCODING_VERSION})")
        try:
            return cls(NumericSketch.from_dict(data.get("numeric") or {}),
                       CategoricalSketch.from_dict(data.get("categorical") or {}),
                       _count(data.get("missing", 0), "sketch.missing"))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ValidationError):
                raise
            raise ValidationError("sketch", data, f"is not a sketch ({e!r})") from e

    @classmethod
    def merged(cls, sketches: Iterable[DistributionSketch]) -> DistributionSketch:
        out: DistributionSketch | None = None
        for sketch in sketches:
            out = sketch.copy() if out is None else out.merge(sketch)
        return out if out is not None else cls.create()


def value_kind(value: Any) -> str:
    """``"numeric"``, ``"categorical"`` or ``"missing"`` for one value."""
    if value is None:
        return "missing"
    if isinstance(value, (bool, np.bool_, str)):
        return "categorical"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "numeric" if math.isfinite(value) else "missing"
    raise ValidationTypeError("value", value, "must be a number, a string, a boolean or None")


# -- records: what a writer stores -------------------------------------------------------------


@dataclass(frozen=True)
class SketchRecord:
    """One writer's cumulative sketch of one (model, feature) over one window.

    ``start_us``: window start (µs since the epoch, UTC); ``window_s``: its
    width in seconds; ``writer``: 16 hex digits naming the accumulator entry that
    wrote it (unique per process and window); ``seq``: that writer's emission
    number — a higher ``seq`` of the same writer replaces a lower one. Must be
    below ``window_s * 1000``."""

    model: str
    feature: str
    start_us: int
    window_s: int
    writer: str
    seq: int
    sketch: DistributionSketch

    @property
    def start(self) -> datetime:
        return us_to_datetime(self.start_us)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for disk spools and the HTTP API)."""
        return {"model": self.model, "feature": self.feature, "start_us": self.start_us,
                "window_s": self.window_s, "writer": self.writer, "seq": self.seq, "sketch": self.sketch.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SketchRecord:
        if not isinstance(data, Mapping):
            raise ValidationTypeError("record", data, "must be an object")
        missing = {"model", "feature", "start_us", "window_s", "writer", "seq", "sketch"} - set(data)
        if missing:
            raise ValidationError(sorted(missing)[0], None, "is missing")
        return validate_record(cls(data["model"], data["feature"], data["start_us"], data["window_s"],
                                   data["writer"], data["seq"], DistributionSketch.from_dict(data["sketch"])))


def validate_name(value: Any, where: str) -> str:
    """A model or feature name: 1 to 256 characters, no control characters."""
    if not isinstance(value, str):
        raise ValidationTypeError(where, value, "must be a string")
    if not value or len(value) > MAX_TAG_VALUE_CHARS:
        raise ValidationError(where, value, f"must be 1 to {MAX_TAG_VALUE_CHARS} characters")
    if _CONTROL_RE.search(value):
        raise ValidationError(where, value, "must not contain control characters")
    return check_encodable(where, value)


def validate_record(record: Any, index: int | None = None) -> SketchRecord:
    where = "record" if index is None else f"records[{index}]"
    if not isinstance(record, SketchRecord):
        raise ValidationTypeError(where, record, "must be a SketchRecord")
    validate_name(record.model, f"{where}.model")
    validate_name(record.feature, f"{where}.feature")
    if isinstance(record.window_s, bool) or not isinstance(record.window_s, int) or not 1 <= record.window_s <= DAY_S:
        raise ValidationError(f"{where}.window_s", record.window_s, f"must be an integer from 1 to {DAY_S} seconds")
    if isinstance(record.start_us, bool) or not isinstance(record.start_us, int):
        raise ValidationTypeError(f"{where}.start_us", record.start_us, "must be an integer (µs since the epoch)")
    if not MIN_TS_US <= record.start_us < MAX_TS_US:
        raise ValidationError(f"{where}.start_us", record.start_us, "must be between 1970 and 2100 (µs since the epoch)")
    if isinstance(record.seq, bool) or not isinstance(record.seq, int) or not 0 <= record.seq < record.window_s * 1000:
        raise ValidationError(f"{where}.seq", record.seq, f"must be an integer from 0 to {record.window_s * 1000 - 1}")
    try:
        if len(bytes.fromhex(record.writer)) != WRITER_BYTES:
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError(f"{where}.writer", record.writer, f"must be {2 * WRITER_BYTES} hex digits") from None
    if not isinstance(record.sketch, DistributionSketch):
        raise ValidationTypeError(f"{where}.sketch", record.sketch, "must be a DistributionSketch")
    return record


def sketch_id(model: str, feature: str) -> bytes:
    """The 8-byte id a (model, feature) pair's rows are keyed by."""
    return hashlib.blake2b(f"sketch\x00{model}\x00{feature}".encode(), digest_size=SERIES_ID_BYTES).digest()


def encode_cell(record: SketchRecord) -> bytes:
    body = json.dumps({"window_s": record.window_s, "sketch": record.sketch.to_dict()}, separators=(",", ":"))
    return bytes([ENCODING_VERSION]) + zlib.compress(body.encode(), 6)


def decode_cell(value: bytes) -> tuple[int, DistributionSketch]:
    """(window_s, sketch) of a stored cell."""
    if not value or value[0] != ENCODING_VERSION:
        raise ValidationError("sketch cell", value[:1], f"unknown encoding (this is {ENCODING_VERSION})")
    data = json.loads(zlib.decompress(value[1:]))
    return data["window_s"], DistributionSketch.from_dict(data["sketch"])


# -- the table ---------------------------------------------------------------------------------


def table_families(max_age_s: float | None) -> dict[str, GCPolicy]:
    """Families of ``tw_sketches``: ``s`` (sketch cells), ``meta`` and ``days``
    (index rows)."""
    return {
        "s": GCPolicy(max_versions=1, max_age_s=max_age_s),
        "meta": GCPolicy(max_versions=1),
        "days": GCPolicy(max_versions=1, max_age_s=max_age_s),
    }


def _index_key(model: str, feature: str) -> bytes:
    return INDEX_PREFIX + model.encode() + b"\x00" + feature.encode()


class SketchTable:
    """Sketch rows and their index in one table; what the Store's sketch
    methods delegate to. Thread-safe."""

    def __init__(self, table: Table, codec: KeyCodec) -> None:
        self.table = table
        self.codec = codec
        self._days = DayIndex(table)

    def write(self, records: Sequence[SketchRecord | Mapping[str, Any]]) -> int:
        """Write sketch records (or their ``to_dict()`` forms); the number
        written. Every record is checked before any is written. Idempotent."""
        if isinstance(records, (SketchRecord, Mapping)):
            raise ValidationTypeError("records", records, "must be a list of sketch records")
        checked = []
        for i, record in enumerate(records):
            if isinstance(record, Mapping):
                try:
                    record = SketchRecord.from_dict(record)
                except ValidationError as e:
                    field = e.field[len("record."):] if e.field.startswith("record.") else e.field
                    raise ValidationError(f"records[{i}].{field}", e.value, e.problem) from e
            checked.append(validate_record(record, i))
        rows: dict[bytes, list[SetCell]] = {}
        days: dict[tuple[str, str], set[int]] = {}
        for record in checked:
            sid = sketch_id(record.model, record.feature)
            key = self.codec.point_key(sid, self.codec.bucket_of(record.start_us))
            qualifier = _QUALIFIER.pack(record.start_us) + bytes.fromhex(record.writer)
            timestamp_ms = record.start_us // 1000 + record.seq
            rows.setdefault(key, []).append(SetCell("s", qualifier, encode_cell(record), timestamp_ms))
            days.setdefault((record.model, record.feature), set()).add(day_of(record.start_us))
        index = []
        for (model, feature), feature_days in days.items():
            meta = json.dumps({"model": model, "feature": feature}).encode()
            index += self._days.mutations(_index_key(model, feature), meta, sketch_id(model, feature), feature_days, "days")
        if index:  # index first: a reader never misses written sketches
            self.table.mutate_rows(index)
        if rows:
            self.table.mutate_rows([RowMutation(k, cells) for k, cells in rows.items()])
        for (model, feature), feature_days in days.items():
            self._days.remember(sketch_id(model, feature), feature_days)
        return len(checked)

    def days(self, model: str, feature: str) -> list[int]:
        return self._days.days(_index_key(model, feature), "days")

    def windows(self, model: str, feature: str, start: Any = None, end: Any = None) -> Iterator[tuple[int, DistributionSketch]]:
        """(window start µs, sketch) of every stored cell whose window starts in
        ``[start, end)``, unmerged, in no particular order."""
        validate_name(model, "model")
        validate_name(feature, "feature")
        start_us, end_us = time_range(start, end)
        keys = self.codec.point_keys_on_days(sketch_id(model, feature), self.days(model, feature), start_us, end_us)
        for row in self.table.read_rows(keys, columns=["s"]):
            yield from _row_windows(row, start_us, end_us)

    def read(self, model: str, feature: str, start: Any = None, end: Any = None) -> DistributionSketch:
        """The merged sketch of every window starting in ``[start, end)``
        (an empty sketch when there is none)."""
        return DistributionSketch.merged(sketch for _, sketch in self.windows(model, feature, start, end))

    def read_by_window(
        self, model: str, feature: str, start: Any = None, end: Any = None
    ) -> list[tuple[datetime, DistributionSketch]]:
        """One merged sketch per window start in ``[start, end)``, in time order
        (for drift over time)."""
        merged: dict[int, DistributionSketch] = {}
        for window_us, sketch in self.windows(model, feature, start, end):
            if window_us in merged:
                merged[window_us].merge(sketch)
            else:
                merged[window_us] = sketch
        return [(us_to_datetime(w), merged[w]) for w in sorted(merged)]

    def features(self, model: str | None = None) -> list[tuple[str, str]]:
        """(model, feature) pairs that have sketches, sorted."""
        prefix = INDEX_PREFIX if model is None else INDEX_PREFIX + validate_name(model, "model").encode() + b"\x00"
        found = []
        for row in self.table.scan(prefix=prefix, columns=[("meta", b"json")]):
            data = json.loads(row.value("meta", b"json"))
            found.append((data["model"], data["feature"]))
        return sorted(found)


def _row_windows(row: Row, start_us: int, end_us: int) -> Iterator[tuple[int, DistributionSketch]]:
    for qualifier, cells in row.cells.get("s", {}).items():
        window_us = _QUALIFIER.unpack_from(qualifier)[0]
        if start_us <= window_us < end_us:
            yield window_us, decode_cell(cells[0].value)[1]


__all__ = [
    "CategoricalSketch",
    "DistributionSketch",
    "NumericSketch",
    "SketchRecord",
    "SketchTable",
    "category_name",
    "sketch_id",
    "value_kind",
]
