"""Task runs: one attempt of one task of a pipeline (an ETL step, a Celery
task, a training stage), with its timing, status and error."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store.names import MAX_TAG_VALUE_CHARS, check_encodable, validate_tags
from tablewatch.store.timestamps import to_us, us_to_datetime

STATUSES = ("queued", "running", "success", "failure", "retry", "revoked", "skipped")
MAX_ERROR_MESSAGE_CHARS = 4000


@dataclass(frozen=True)
class TaskRun:
    """One attempt of a task. Times are UTC datetimes; ``duration_s`` is
    ``ended_at - started_at`` in seconds unless given. ``attempt`` counts from 1;
    attempt 3 means two retries came before it."""

    pipeline: str
    task: str
    run_id: str
    status: str
    attempt: int = 1
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    host: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_location: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def time(self) -> datetime:
        """The time the run is filed under: start, else queue, else end time."""
        found = self.started_at or self.queued_at or self.ended_at
        assert found is not None  # checked by validate_task_run
        return found

    @property
    def queue_wait_s(self) -> float | None:
        if self.queued_at is None or self.started_at is None:
            return None
        return (self.started_at - self.queued_at).total_seconds()

    def to_json(self) -> bytes:
        data = asdict(self)
        for name in ("queued_at", "started_at", "ended_at"):
            if data[name] is not None:
                data[name] = to_us(data[name])
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TaskRun:
        data = json.loads(raw)
        for name in ("queued_at", "started_at", "ended_at"):
            if data.get(name) is not None:
                data[name] = us_to_datetime(data[name])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def validate_task_run(run: Any, index: int = 0) -> TaskRun:
    """A checked TaskRun from a TaskRun or a dict; errors name ``runs[i].field``."""
    where = f"runs[{index}]"
    if isinstance(run, dict):
        unknown = set(run) - {f.name for f in fields(TaskRun)}
        if unknown:
            raise ValidationError(f"{where}", sorted(unknown), "has unknown fields")
        for name in ("pipeline", "task", "run_id", "status"):
            if name not in run:
                raise ValidationError(f"{where}.{name}", None, "is required")
        run = TaskRun(**run)
    if not isinstance(run, TaskRun):
        raise ValidationTypeError(where, run, "must be a TaskRun or a dict")
    changes: dict[str, Any] = {}
    for name in ("pipeline", "task", "run_id"):
        value = getattr(run, name)
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{where}.{name}", value, "must be a non-empty string")
        if len(value) > MAX_TAG_VALUE_CHARS or "\x00" in value:
            raise ValidationError(f"{where}.{name}", value, f"must be at most {MAX_TAG_VALUE_CHARS} characters, no NUL")
        check_encodable(f"{where}.{name}", value)
    if run.status not in STATUSES:
        raise ValidationError(f"{where}.status", run.status, f"must be one of {', '.join(STATUSES)}")
    if not isinstance(run.attempt, int) or isinstance(run.attempt, bool) or not 1 <= run.attempt <= 65535:
        raise ValidationError(f"{where}.attempt", run.attempt, "must be an integer from 1 to 65535")
    for name in ("queued_at", "started_at", "ended_at"):
        value = getattr(run, name)
        if value is not None and not isinstance(value, datetime):
            changes[name] = us_to_datetime(to_us(value, f"{where}.{name}"))
        elif value is not None:
            to_us(value, f"{where}.{name}")
            if value.tzinfo is None:
                changes[name] = us_to_datetime(to_us(value))
    times = {name: changes.get(name, getattr(run, name)) for name in ("queued_at", "started_at", "ended_at")}
    if not any(times.values()):
        raise ValidationError(where, run.run_id, "needs at least one of queued_at, started_at, ended_at")
    if times["started_at"] and times["ended_at"] and times["ended_at"] < times["started_at"]:
        raise ValidationError(f"{where}.ended_at", times["ended_at"], "is before started_at")
    duration = run.duration_s
    if duration is None and times["started_at"] and times["ended_at"]:
        changes["duration_s"] = (times["ended_at"] - times["started_at"]).total_seconds()
    elif duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration >= 0:
            raise ValidationError(f"{where}.duration_s", duration, "must be a number of seconds >= 0")
        changes["duration_s"] = float(duration)
    if run.error_message is not None and len(run.error_message) > MAX_ERROR_MESSAGE_CHARS:
        changes["error_message"] = run.error_message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    for name in ("host", "error_type", "error_message", "error_location"):
        value = getattr(run, name)
        if value is not None and not isinstance(value, str):
            raise ValidationTypeError(f"{where}.{name}", value, "must be a string or None")
        if value is not None:
            check_encodable(f"{where}.{name}", value)
    changes["tags"] = validate_tags(run.tags)
    return TaskRun(**{**asdict(run), **changes}) if changes else run
