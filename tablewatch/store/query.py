"""Reading series outside Python: times as people and OpenTSDB write them,
series summaries, and OpenTSDB's query language (``/api/query``).

Used by the ``tablewatch series`` / ``tablewatch query`` commands and by the
read routes of ``tablewatch server`` (:mod:`tablewatch.collectors.query_api`).
The OpenTSDB part follows OpenTSDB 2.x's documented ``/api/query``: sub-queries
``aggregator:[interval-agg[-fill]:][rate:]metric{tagk=filter,...}{filters}`` or
their JSON form; tag filters group the result (``*``, ``a|b``, ``wildcard()``,
``regexp()``, ``literal_or()``...); series of a group are aggregated at every
timestamp any of them has, interpolating linearly where an aggregator does
(sum, min, max, avg, dev, median) and skipping missing ones where it does not
(zimsum, mimmin, mimmax, count, first, last). Times are inclusive at both ends,
as in OpenTSDB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from tablewatch.errors import ValidationError
from tablewatch.store.names import Series

#: Seconds per unit of an OpenTSDB duration (``n`` is a 30-day month, ``y`` 365 days).
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "n": 30 * 86400,
                  "y": 365 * 86400}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|n|y)$", re.IGNORECASE)
#: Cross-series aggregators, each with whether it interpolates a series that
#: has no point at a timestamp inside its time span (OpenTSDB's LERP) or skips it.
AGGREGATORS: Mapping[str, bool] = {
    "sum": True, "min": True, "max": True, "avg": True, "dev": True, "median": True,
    "zimsum": False, "mimmin": False, "mimmax": False, "count": False, "first": False, "last": False,
    "none": False,
}
#: Downsampling functions (per series, per interval).
DOWNSAMPLERS = ("avg", "sum", "min", "max", "count", "first", "last", "dev", "median",
                "zimsum", "mimmin", "mimmax")
FILL_POLICIES = ("none", "nan", "null", "zero")
#: Tag value filter types, with OpenTSDB's descriptions (``/api/config/filters``).
FILTER_TYPES: Mapping[str, str] = {
    "literal_or": "Accepts one or more exact values, separated by |: web01|web02",
    "iliteral_or": "Like literal_or, ignoring case",
    "not_literal_or": "Accepts any value but these, separated by |",
    "not_iliteral_or": "Like not_literal_or, ignoring case",
    "wildcard": "Accepts values matching a pattern with * wildcards: web*, *.example.com, *",
    "iwildcard": "Like wildcard, ignoring case",
    "regexp": "Accepts values a regular expression finds a match in: web[0-9]+",
}


class QueryError(ValidationError):
    """A query that cannot be run; ``status`` is the HTTP status to answer."""

    def __init__(self, field: str, value: Any, problem: str, status: int = 400) -> None:
        super().__init__(field, value, problem)
        self.status = status


# -- times -------------------------------------------------------------------------------


def parse_duration(text: str, field: str = "duration") -> float:
    """Seconds of an OpenTSDB duration: ``500ms``, ``30s``, ``5m``, ``1h``, ``7d``, ``2w``, ``1n``, ``1y``."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or int(match.group(1)) <= 0:
        raise QueryError(field, text, "must be a duration: a whole number > 0 and a unit of ms, s, m, h, d, w, n, y (e.g. 1h)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2).lower()]


def parse_time(value: Any, field: str, now: float | None = None) -> float:
    """Epoch seconds of a time written as OpenTSDB takes it: ``now``,
    ``1h-ago``, epoch seconds (up to 10 digits) or milliseconds (more digits,
    or ``…ms``), ``yyyy/MM/dd[-HH:mm[:ss]]`` (UTC); also ISO-8601."""
    now = now if now is not None else datetime.now(timezone.utc).timestamp()
    if isinstance(value, bool) or value is None:
        raise QueryError(field, value, "must be a time: epoch seconds or ms, ISO-8601, now, or like 1h-ago")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise QueryError(field, value, "must be a time after 1970")
        return value / 1000 if value >= 1e11 else float(value)
    text = str(value).strip()
    lowered = text.lower()
    if lowered == "now":
        return now
    if lowered.endswith("-ago"):
        return now - parse_duration(text[:-4], field)
    if re.fullmatch(r"\d+ms", lowered):
        return int(lowered[:-2]) / 1000
    if re.fullmatch(r"\d+", text):
        return int(text) if len(text) <= 10 else int(text) / 1000
    if re.fullmatch(r"\d{1,10}\.\d+", text):
        return float(text)
    formats = {10: "%Y/%m/%d", 16: "%Y/%m/%d-%H:%M", 19: "%Y/%m/%d-%H:%M:%S"}
    if "/" in text and len(text) in formats:
        try:
            parsed = datetime.strptime(text.replace(" ", "-"), formats[len(text)])
        except ValueError as e:
            raise QueryError(field, value, f"is not a date like 2026/11/20-12:00:00 ({e})") from e
        return parsed.replace(tzinfo=timezone.utc).timestamp()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise QueryError(field, value, "must be a time: epoch seconds or ms, ISO-8601, "
                         "2026/11/20-12:00:00, now, or like 1h-ago") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_tags(items: Iterable[str], field: str = "tag") -> dict[str, str]:
    """``["k=v", ...]`` as a dict; an item without ``=`` is refused, naming it."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryError(field, item, "must be KEY=VALUE")
        tags[key] = value
    return tags


# -- series summaries ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesSummary:
    """One series with how many points it holds (within retention) and its last point."""

    metric: str
    tags: Mapping[str, str]
    points: int
    first_ts: float | None
    last_ts: float | None
    last_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "tags": dict(self.tags), "points": self.points, "first_ts": self.first_ts,
                "last_ts": self.last_ts, "last_value": _json_number(self.last_value)}


def summarize_series(store: Any, metric: str | None = None, tags: Mapping[str, Any] | None = None,
                     limit: int | None = None) -> list[SeriesSummary]:
    """Series of ``metric`` (all when None) whose tags include ``tags``, with
    their point counts and last points (reads each series' points)."""
    found = store.find_series(metric, tags or {})
    summaries = []
    for series in found[:limit] if limit else found:
        ts, values, _ = store.read_arrays(series.metric, series.tags)
        summaries.append(SeriesSummary(
            series.metric, series.tags, len(ts),
            float(ts[0]) / 1e6 if len(ts) else None,
            float(ts[-1]) / 1e6 if len(ts) else None,
            float(values[-1]) if len(ts) else None,
        ))
    return summaries


def points_payload(metric: str, tags: Mapping[str, str], frame: Any) -> dict[str, Any]:
    """A read of one series as JSON: ``{"metric", "tags", "count", "points":
    [{"ts": epoch seconds, "value", "step"}]}`` (NaN as null)."""
    import pandas as pd

    seconds = ((frame["ts"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).tolist()
    steps = [None if pd.isna(s) else int(s) for s in frame["step"].tolist()]
    points = [{"ts": t, "value": _json_number(v), "step": s}
              for t, v, s in zip(seconds, frame["value"].tolist(), steps)]
    return {"metric": metric, "tags": dict(tags), "count": len(points), "points": points}


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


# -- OpenTSDB /api/query ----------------------------------------------------------------------


@dataclass(frozen=True)
class TagFilter:
    """One OpenTSDB tag value filter; a series without the tag never matches."""

    tagk: str
    type: str
    filter: str
    group_by: bool

    def __post_init__(self) -> None:
        if self.type not in FILTER_TYPES:
            raise QueryError("filters.type", self.type, f"is not a filter type (known: {', '.join(FILTER_TYPES)})")
        if self.type == "regexp":
            try:
                re.compile(self.filter)
            except re.error as e:
                raise QueryError("filters.filter", self.filter, f"is not a regular expression ({e})") from e

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        kind, pattern = self.type, self.filter
        if kind.startswith("not_"):
            return not TagFilter(self.tagk, kind[4:], pattern, False).matches(value)
        if kind in ("iliteral_or", "iwildcard"):
            value, pattern, kind = value.lower(), pattern.lower(), kind[1:]
        if kind == "literal_or":
            return value in pattern.split("|")
        if kind == "wildcard":
            return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None
        return re.search(pattern, value) is not None

    def to_dict(self) -> dict[str, Any]:
        return {"tagk": self.tagk, "type": self.type, "filter": self.filter, "groupBy": self.group_by}


def tag_filter(tagk: str, value: str, group_by: bool) -> TagFilter:
    """The filter a ``tagk=value`` of a query means: ``type(expr)`` names its
    type; otherwise ``*`` makes a wildcard and ``|`` a literal_or."""
    explicit = re.fullmatch(r"([a-z_]+)\((.*)\)", value)
    if explicit and explicit.group(1) in FILTER_TYPES:
        return TagFilter(tagk, explicit.group(1), explicit.group(2), group_by)
    return TagFilter(tagk, "wildcard" if "*" in value else "literal_or", value, group_by)


@dataclass(frozen=True)
class SubQuery:
    """One metric of an OpenTSDB query."""

    index: int
    aggregator: str
    metric: str
    filters: tuple[TagFilter, ...] = ()
    downsample: str | None = None
    rate: bool = False
    rate_options: Mapping[str, Any] = field(default_factory=dict)
    #: Only series whose tag keys are exactly the filters' tag keys.
    explicit_tags: bool = False

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise QueryError(f"queries[{self.index}].aggregator", self.aggregator,
                             f"is not an aggregator (known: {', '.join(AGGREGATORS)})")
        if not self.metric:
            raise QueryError(f"queries[{self.index}].metric", self.metric, "is required")
        if self.downsample is not None:
            parse_downsample(self.downsample, f"queries[{self.index}].downsample")

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "aggregator": self.aggregator, "metric": self.metric,
                "downsample": self.downsample, "rate": self.rate, "rateOptions": dict(self.rate_options) or None,
                "filters": [f.to_dict() for f in self.filters],
                "tags": {f.tagk: f.filter for f in self.filters if f.group_by}, "explicitTags": self.explicit_tags}

    def matches(self, series: Series) -> bool:
        """Whether ``series`` (of this metric) passes every filter."""
        if self.explicit_tags and set(series.tags) != {f.tagk for f in self.filters}:
            return False
        return all(f.matches(series.tags.get(f.tagk)) for f in self.filters)


def parse_downsample(text: str, field: str = "downsample") -> tuple[float | None, str, str]:
    """``1m-avg[-fill]`` -> (seconds, function, fill); ``0all-sum``: one interval (seconds None)."""
    parts = text.split("-") if isinstance(text, str) else []
    if len(parts) not in (2, 3):
        raise QueryError(field, text, "must be INTERVAL-FUNCTION[-FILL], e.g. 1m-avg or 1h-max-zero")
    interval = None if parts[0].lower() == "0all" else parse_duration(parts[0], field)
    if parts[1] not in DOWNSAMPLERS:
        raise QueryError(field, text, f"{parts[1]!r} is not a downsampling function (known: {', '.join(DOWNSAMPLERS)})")
    fill = parts[2] if len(parts) == 3 else "none"
    if fill not in FILL_POLICIES:
        raise QueryError(field, text, f"{fill!r} is not a fill policy (known: {', '.join(FILL_POLICIES)})")
    return interval, parts[1], fill


def parse_m(text: str, index: int) -> SubQuery:
    """A sub-query of the ``m=`` form: ``agg:[interval-agg:][rate[{...}]:]metric[{tags}][{filters}]``."""
    field_name = f"m[{index}]"
    match = re.fullmatch(r"([^{}]*?)(\{[^{}]*\})?(\{[^{}]*\})?", text or "")
    if not match:
        raise QueryError(field_name, text, "must look like sum:1m-avg:metric{tag=value}")
    parts = match.group(1).split(":")
    if len(parts) < 2:
        raise QueryError(field_name, text, "needs an aggregator and a metric, e.g. sum:metric")
    downsample, rate, rate_options, explicit = None, False, {}, False
    for part in parts[1:-1]:
        if part.lower().startswith("rate"):
            rate = True
            rate_options = {"counter": "counter" in part.lower()}
        elif part[:1].isdigit():
            downsample = part
        elif part.lower() == "explicit_tags":
            explicit = True
        elif part:
            raise QueryError(field_name, text, f"{part!r} is neither a downsampler (like 1m-avg) nor rate")
    filters = [tag_filter(k, v, True) for k, v in _braces(match.group(2), field_name)]
    filters += [tag_filter(k, v, False) for k, v in _braces(match.group(3), field_name)]
    return SubQuery(index, parts[0], parts[-1], tuple(filters), downsample, rate, rate_options, explicit)


def _braces(text: str | None, field_name: str) -> list[tuple[str, str]]:
    if not text or text == "{}":
        return []
    pairs = []
    for item in text[1:-1].split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise QueryError(field_name, text, f"{item!r} must be TAGK=FILTER")
        pairs.append((key.strip(), value.strip()))
    return pairs


def sub_query_from_json(obj: Any, index: int) -> SubQuery:
    """A sub-query of the JSON body form (``aggregator``, ``metric``, ``tags``
    or ``filters``, ``downsample``, ``rate``, ``rateOptions``)."""
    if not isinstance(obj, Mapping):
        raise QueryError(f"queries[{index}]", obj, "must be an object with aggregator and metric")
    filters = []
    for key, value in (obj.get("tags") or {}).items():
        filters.append(tag_filter(str(key), str(value), True))
    for i, spec in enumerate(obj.get("filters") or []):
        if not isinstance(spec, Mapping) or not {"type", "tagk", "filter"} <= set(spec):
            raise QueryError(f"queries[{index}].filters[{i}]", spec, "must have type, tagk and filter")
        filters.append(TagFilter(str(spec["tagk"]), str(spec["type"]), str(spec["filter"]),
                                 _truthy(spec.get("groupBy", False))))
    return SubQuery(index, str(obj.get("aggregator", "")), str(obj.get("metric", "")), tuple(filters),
                    obj.get("downsample") or None, _truthy(obj.get("rate", False)), obj.get("rateOptions") or {},
                    _truthy(obj.get("explicitTags", False)))


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def run_query(store: Any, queries: Sequence[SubQuery], start_s: float, end_s: float | None = None, *,
              ms_resolution: bool = False, show_query: bool = False, arrays: bool = False) -> list[dict[str, Any]]:
    """Answer an OpenTSDB query: one result per group of each sub-query, as
    OpenTSDB's ``/api/query`` answers (``metric``, ``tags``, ``aggregateTags``,
    ``dps``; ``query`` with ``show_query``)."""
    end_s = end_s if end_s is not None else datetime.now(timezone.utc).timestamp()
    if end_s < start_s:
        raise QueryError("end", end_s, f"must not be before start ({start_s})")
    results = []
    for query in queries:
        all_series = store.find_series(query.metric)
        if not all_series:
            raise QueryError("metric", query.metric, f"No such name for 'metrics': '{query.metric}'")
        series = [s for s in all_series if query.matches(s)]
        group_keys = [f.tagk for f in query.filters if f.group_by]
        groups: dict[tuple, list[Series]] = {}
        for s in series:
            key = (s.metric, tuple(sorted(s.tags.items()))) if query.aggregator == "none" else \
                tuple(s.tags.get(k) for k in group_keys)
            groups.setdefault(key, []).append(s)
        for key in sorted(groups, key=str):
            members = groups[key]
            ts_ms, values = _group_points(store, query, members, start_s, end_s)
            if len(ts_ms) == 0:
                continue
            result = {"metric": query.metric, **_tags_of(members)}
            if show_query:
                result["query"] = query.to_dict()
            stamps = (ts_ms if ms_resolution else ts_ms // 1000).tolist()
            numbers = [_json_number(v) for v in values.tolist()]
            result["dps"] = [[t, v] for t, v in zip(stamps, numbers)] if arrays else \
                {str(t): v for t, v in zip(stamps, numbers)}
            results.append(result)
    return results


def _tags_of(members: list[Series]) -> dict[str, Any]:
    """OpenTSDB's ``tags`` (same value in every series of the group) and
    ``aggregateTags`` (the other tag keys)."""
    keys = set().union(*(s.tags for s in members))
    common = {k: members[0].tags[k] for k in keys
              if all(k in s.tags and s.tags[k] == members[0].tags[k] for s in members)}
    return {"tags": dict(sorted(common.items())), "aggregateTags": sorted(keys - set(common))}


def _group_points(store: Any, query: SubQuery, members: list[Series], start_s: float, end_s: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The group's points (ms, values) after rate, downsampling and aggregation."""
    start_us, end_us = int(start_s * 1e6), int(end_s * 1e6) + 1  # inclusive end, as OpenTSDB
    per_series = []
    for s in members:
        ts_us, values, _ = store.read_arrays(s.metric, s.tags, start_us / 1e6, end_us / 1e6)
        ts_ms = ts_us // 1000
        if query.rate:
            ts_ms, values = _rate(ts_ms, values, query.rate_options)
        if query.downsample:
            ts_ms, values = _downsample(ts_ms, values, query.downsample, int(start_s * 1000), int(end_s * 1000))
        if len(ts_ms):
            per_series.append((ts_ms, values))
    if not per_series:
        return np.array([], dtype=np.int64), np.array([])
    if query.aggregator == "none" or len(per_series) == 1:
        return per_series[0]
    return _aggregate(per_series, query.aggregator)


def _rate(ts_ms: np.ndarray, values: np.ndarray, options: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    if len(ts_ms) < 2:
        return ts_ms[:0], values[:0]
    dt = np.diff(ts_ms) / 1000.0
    dv = np.diff(values)
    keep = dt > 0
    if options.get("counter"):
        counter_max = options.get("counterMax")
        resets = dv < 0
        if counter_max:
            dv = np.where(resets, counter_max - values[:-1] + values[1:], dv)
        elif options.get("dropResets", True):
            keep &= ~resets
    return ts_ms[1:][keep], (dv[keep] / dt[keep])


def _downsample(ts_ms: np.ndarray, values: np.ndarray, spec: str, start_ms: int, end_ms: int
                ) -> tuple[np.ndarray, np.ndarray]:
    interval_s, function, fill = parse_downsample(spec)
    if interval_s is None:  # 0all: one interval over the whole query, stamped at its start
        buckets = np.zeros(len(ts_ms), dtype=np.int64)
        width, origin = 1, start_ms
    else:
        width = max(1, int(interval_s * 1000))
        buckets = ts_ms // width
        origin = 0
    if len(ts_ms) == 0:
        unique = np.array([], dtype=np.int64)
        out = np.array([])
    else:
        unique, first = np.unique(buckets, return_index=True)
        bounds = list(first) + [len(ts_ms)]
        out = np.array([_reduce(function, values[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])])
    stamps = origin + unique * width if interval_s is not None else np.full(len(unique), start_ms, dtype=np.int64)
    if fill != "none" and interval_s is not None:
        every = np.arange(start_ms // width, end_ms // width + 1, dtype=np.int64)
        filled = np.full(len(every), 0.0 if fill == "zero" else np.nan)
        filled[np.searchsorted(every, unique)] = out
        return every * width, filled
    return stamps.astype(np.int64), out


def _reduce(function: str, values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    if function == "count":
        return float(len(finite))
    if len(finite) == 0:
        return math.nan
    if function in ("sum", "zimsum"):
        return float(finite.sum())
    if function in ("min", "mimmin"):
        return float(finite.min())
    if function in ("max", "mimmax"):
        return float(finite.max())
    if function == "first":
        return float(finite[0])
    if function == "last":
        return float(finite[-1])
    if function == "dev":
        return float(finite.std())
    if function == "median":
        return float(np.median(finite))
    return float(finite.mean())


def _aggregate(per_series: list[tuple[np.ndarray, np.ndarray]], aggregator: str) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate series at every timestamp any of them has. A series with no
    point at a timestamp inside its span is interpolated linearly (LERP
    aggregators) or left out; outside its span it is always left out."""
    stamps = np.unique(np.concatenate([ts for ts, _ in per_series]))
    matrix = np.full((len(per_series), len(stamps)), np.nan)
    for row, (ts, values) in enumerate(per_series):
        exact = np.searchsorted(stamps, ts)
        if AGGREGATORS[aggregator]:
            inside = (stamps >= ts[0]) & (stamps <= ts[-1])
            matrix[row, inside] = np.interp(stamps[inside], ts, values)
        matrix[row, exact] = values
    out = np.array([_reduce(aggregator, matrix[:, i]) for i in range(len(stamps))])
    keep = ~np.isnan(out)
    return stamps[keep], out[keep]


def suggest(store: Any, kind: str, prefix: str = "", limit: int = 25) -> list[str]:
    """OpenTSDB's ``/api/suggest``: metric names, tag keys or tag values that
    start with ``prefix``, sorted, at most ``limit`` (25 when 0 or None, as OpenTSDB)."""
    if kind not in ("metrics", "tagk", "tagv"):
        raise QueryError("type", kind, "must be metrics, tagk or tagv")
    found: set[str] = set()
    for series in store.find_series():
        if kind == "metrics":
            found.add(series.metric)
        elif kind == "tagk":
            found.update(series.tags)
        else:
            found.update(series.tags.values())
    return sorted(v for v in found if v.startswith(prefix or ""))[: limit or 25]


def lookup(store: Any, m: str, limit: int = 25) -> dict[str, Any]:
    """OpenTSDB's ``/api/search/lookup``: the series of ``metric{tagk=value}``
    (``*`` matches any value)."""
    query = parse_m("none:" + m, 0)
    series = [s for s in store.find_series(query.metric) if query.matches(s)]
    results = [{"tsuid": "", "metric": s.metric, "tags": dict(s.tags)} for s in series[:limit]]
    return {"type": "LOOKUP", "metric": query.metric, "limit": limit, "startIndex": 0,
            "totalResults": len(series), "results": results}
