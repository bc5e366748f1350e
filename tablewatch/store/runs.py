"""Training runs: one execution of a training job, with its parameters and
final metrics. The points it logged carry the tag ``run=<run_id>``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store.names import MAX_TAG_VALUE_CHARS, check_encodable, validate_metric, validate_tags
from tablewatch.store.timestamps import to_us, us_to_datetime

RUN_STATUSES = ("running", "success", "failure", "killed")
MAX_PARAMS = 256
_PARAM_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class TrainingRun:
    """``name`` groups runs (an experiment, a model); ``run_id`` identifies one.
    Writing a run again with the same name, run_id and ``started_at`` replaces
    it: a run is written when it starts and again when it ends."""

    name: str
    run_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def to_json(self) -> bytes:
        data = asdict(self)
        data["started_at"] = to_us(self.started_at)
        data["ended_at"] = None if self.ended_at is None else to_us(self.ended_at)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TrainingRun:
        data = json.loads(raw)
        data["started_at"] = us_to_datetime(data["started_at"])
        if data.get("ended_at") is not None:
            data["ended_at"] = us_to_datetime(data["ended_at"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def validate_training_run(run: Any) -> TrainingRun:
    if isinstance(run, dict):
        try:
            run = TrainingRun(**run)
        except TypeError as e:
            raise ValidationTypeError("run", run, f"has missing or unknown fields: {e}") from e
    if not isinstance(run, TrainingRun):
        raise ValidationTypeError("run", run, "must be a TrainingRun or a dict")
    for name in ("name", "run_id"):
        value = getattr(run, name)
        if not isinstance(value, str) or not value or len(value) > MAX_TAG_VALUE_CHARS or "\x00" in value:
            raise ValidationError(f"run.{name}", value, f"must be a non-empty string of at most {MAX_TAG_VALUE_CHARS} characters")
        check_encodable(f"run.{name}", value)
    if run.status not in RUN_STATUSES:
        raise ValidationError("run.status", run.status, f"must be one of {', '.join(RUN_STATUSES)}")
    started = us_to_datetime(to_us(run.started_at, "run.started_at"))
    ended = None if run.ended_at is None else us_to_datetime(to_us(run.ended_at, "run.ended_at"))
    if ended is not None and ended < started:
        raise ValidationError("run.ended_at", run.ended_at, "is before started_at")
    if not isinstance(run.params, dict) or len(run.params) > MAX_PARAMS:
        raise ValidationError("run.params", run.params, f"must be a dict of at most {MAX_PARAMS} entries")
    params = {}
    for key, value in run.params.items():
        if not isinstance(key, str):
            raise ValidationTypeError("run.params", key, "parameter names must be strings")
        if not isinstance(value, _PARAM_TYPES):
            value = str(value)  # a path, an enum, a list: kept as its text
        params[key] = value
    metrics = {}
    for key, value in run.metrics.items():
        validate_metric(key, f"run.metrics[{key!r}]")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value):
            raise ValidationTypeError(f"run.metrics[{key!r}]", value, "must be a finite number")
        metrics[key] = float(value)
    return TrainingRun(
        name=run.name, run_id=run.run_id, status=run.status, started_at=started, ended_at=ended,
        params=params, metrics=metrics, tags=validate_tags(run.tags), host=run.host, error=run.error,
    )
