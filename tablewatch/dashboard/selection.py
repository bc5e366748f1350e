"""What a dashboard page shows, kept in (and restored from) the URL's query
parameters, so that a link from a Slack alert or a colleague opens the same view.

Parameters (all optional): ``pipeline``, ``task``, ``model``, ``run``
(repeatable or comma-separated), ``feature``, ``route``, ``start`` and ``end``
(ISO-8601 UTC or epoch seconds), or ``range`` (``1h``, ``24h``, ``7d``, ``30d``;
ignored when start or end is given), ``incident``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from tablewatch.errors import ValidationError
from tablewatch.store.timestamps import to_us

#: Named ranges offered by the time-range picker, in seconds.
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "24h"
_TEXT_PARAMS = ("pipeline", "task", "model", "feature", "route", "incident")
KNOWN_PARAMS = (*_TEXT_PARAMS, "run", "start", "end", "range")
MAX_PARAM_CHARS = 256


@dataclass(frozen=True)
class Selection:
    """The selection of a page. ``start``/``end`` (epoch seconds, UTC) are set
    when the URL gave them; otherwise ``range`` names a window ending now."""

    pipeline: str | None = None
    task: str | None = None
    model: str | None = None
    runs: tuple[str, ...] = ()
    feature: str | None = None
    route: str | None = None
    incident: str | None = None
    start: float | None = None
    end: float | None = None
    range: str = DEFAULT_RANGE

    def window(self, now: float) -> tuple[float, float]:
        """The half-open time window ``[start, end)`` in epoch seconds: the
        explicit start/end (either may default from the range), else the range
        ending at ``now``."""
        span = RANGES[self.range]
        if self.start is None and self.end is None:
            return now - span, now
        end = self.end if self.end is not None else now
        start = self.start if self.start is not None else end - span
        return start, end

    def with_(self, **changes: Any) -> Selection:
        return replace(self, **changes)

    def to_params(self) -> dict[str, str]:
        """The query parameters that restore this selection (empty ones left out)."""
        params: dict[str, str] = {}
        for name in _TEXT_PARAMS:
            value = getattr(self, name)
            if value:
                params[name] = value
        if self.runs:
            params["run"] = ",".join(self.runs)
        if self.start is not None or self.end is not None:
            if self.start is not None:
                params["start"] = format_time(self.start)
            if self.end is not None:
                params["end"] = format_time(self.end)
        elif self.range != DEFAULT_RANGE:
            params["range"] = self.range
        return params


def format_time(seconds: float) -> str:
    """Epoch seconds as ISO-8601 UTC (``2026-11-20T00:00:00Z``)."""
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(value: str, field: str) -> float:
    """ISO-8601 (UTC unless it says otherwise) or epoch seconds, as epoch seconds."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return to_us(text, field) / 1e6
    return to_us(number, field) / 1e6


def parse_params(params: Mapping[str, str | Sequence[str]]) -> Selection:
    """A Selection from query parameters (a value may be a list when the
    parameter is repeated). Unknown parameters are ignored; a bad value raises
    :class:`~tablewatch.errors.ValidationError` naming the parameter."""
    def values(name: str) -> list[str]:
        raw = params.get(name)
        if raw is None:
            return []
        items = [raw] if isinstance(raw, str) else list(raw)
        for item in items:
            if not isinstance(item, str) or len(item) > MAX_PARAM_CHARS:
                raise ValidationError(name, item, f"must be text of at most {MAX_PARAM_CHARS} characters")
        return items

    def last(name: str) -> str | None:
        found = [v.strip() for v in values(name) if v.strip()]
        return found[-1] if found else None

    runs: list[str] = []
    for item in values("run"):
        runs += [part.strip() for part in item.split(",") if part.strip() and part.strip() not in runs]
    range_name = last("range") or DEFAULT_RANGE
    if range_name not in RANGES:
        raise ValidationError("range", range_name, f"must be one of {', '.join(RANGES)}")
    start = parse_time(s, "start") if (s := last("start")) else None
    end = parse_time(e, "end") if (e := last("end")) else None
    if start is not None and end is not None and not start < end:
        raise ValidationError("end", last("end"), "must be after start")
    return Selection(
        **{name: last(name) for name in _TEXT_PARAMS}, runs=tuple(runs), start=start, end=end, range=range_name
    )


__all__ = ["DEFAULT_RANGE", "RANGES", "Selection", "format_time", "parse_params", "parse_time"]
