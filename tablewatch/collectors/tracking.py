"""Task durations, failures and retries, recorded as task runs.

Two forms, like ``prometheus_client``'s ``Histogram.time()``:

``collector.task(pipeline, task, run_id=None, attempt=1)`` — a :class:`TaskTimer`,
used as a context manager (``with`` or ``async with``) or as a decorator::

    with collector.task("nightly-etl", "extract") as attempt:
        extract()

    @collector.task("nightly-etl", "load")
    def load(): ...

``collector.track(pipeline=..., task=..., retries=N, retry_on=(...), backoff=0.1)``
— a decorator that also *retries* the function, on sync and ``async`` functions::

    @collector.track(pipeline="nightly-etl", retries=3, retry_on=(ConnectionError,))
    def fetch(): ...

Every attempt becomes a :class:`~tablewatch.store.TaskRun` (status ``success``,
``failure``, ``retry`` when another attempt follows, ``revoked`` when cancelled;
attempt number; start/end times; duration; the exception's type, message and
``file:line`` of the innermost traceback frame, i.e. where it was raised) and a
point of ``task.duration_s`` (tags ``pipeline``, ``task``). When a call is over
(success or final failure) a point of ``task.retries`` records how many retries
it took (``attempt - 1``). These points never take a training run's tags.

``run_id`` (identifies one logical execution across its attempts): given, or
else a random UUID (hex) — per ``with`` block for :meth:`Collector.task`, per
call of a function decorated with ``task()``, and per call, shared by all its
attempts, for ``track()``.

Each use gets a fresh timer: a timer object (or decorated function) can be
used from many threads and asyncio tasks at once and re-entered (recursion);
the state of an attempt lives in a ``contextvars`` stack, not on the object.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tablewatch.errors import ValidationError, ValidationTypeError
from tablewatch.store.names import MAX_TAG_VALUE_CHARS, validate_tags
from tablewatch.store.tasks import TaskRun
from tablewatch.store.timestamps import to_us, us_to_datetime

if TYPE_CHECKING:
    from tablewatch.collectors.sdk import Collector

log = logging.getLogger("tablewatch")

DURATION_METRIC = "task.duration_s"
RETRIES_METRIC = "task.retries"

#: Attempts open in this thread / asyncio task: (timer, attempt) pairs, innermost last.
_OPEN: ContextVar[tuple] = ContextVar("tablewatch_open_attempts", default=())


def _check_name(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationTypeError(field, value, "must be a string")
    if not value or len(value) > MAX_TAG_VALUE_CHARS or "\x00" in value:
        raise ValidationError(field, value, f"must be 1 to {MAX_TAG_VALUE_CHARS} characters, no NUL")
    return value


def _check_attempt(attempt: Any) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= 65535:
        raise ValidationError("attempt", attempt, "must be an integer from 1 to 65535")
    return attempt


def error_location(tb: Any) -> str | None:
    """``file:line`` of the innermost frame of a traceback (where it was raised)."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class TaskAttempt:
    """One running attempt; ``with collector.task(...) as attempt`` gives it.
    Call :meth:`mark_retry` before raising when the caller will retry, so the
    attempt is recorded as ``retry`` rather than ``failure``."""

    def __init__(self, collector: Collector, pipeline: str, task: str, run_id: str, attempt: int,
                 queued_at: datetime | None, tags: dict[str, str]) -> None:
        self.collector = collector
        self.pipeline = pipeline
        self.task = task
        self.run_id = run_id
        self.attempt = attempt
        self.queued_at = queued_at
        self.tags = tags
        self.started_at = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.will_retry = False
        self.result: TaskRun | None = None

    def mark_retry(self) -> None:
        self.will_retry = True

    def finish(self, exc: BaseException | None, *, retrying: bool | None = None) -> TaskRun:
        """Record the attempt (never raises into the caller's code)."""
        duration = time.perf_counter() - self._t0
        retrying = self.will_retry if retrying is None else retrying
        if exc is None:
            status = "success"
        elif retrying:
            status = "retry"
        elif isinstance(exc, asyncio.CancelledError):
            status = "revoked"
        else:
            status = "failure"
        run = TaskRun(
            pipeline=self.pipeline, task=self.task, run_id=self.run_id, status=status, attempt=self.attempt,
            queued_at=self.queued_at, started_at=self.started_at, ended_at=datetime.now(timezone.utc),
            duration_s=duration, host=self.collector.host,
            error_type=None if exc is None else type(exc).__qualname__,
            error_message=None if exc is None else str(exc),
            error_location=None if exc is None else error_location(exc.__traceback__),
            tags=self.tags,
        )
        self.result = run
        try:
            self.collector.write_task_run(run)
            series_tags = {"pipeline": self.pipeline, "task": self.task}
            self.collector._log_untagged(DURATION_METRIC, duration, series_tags)
            if status != "retry":
                self.collector._log_untagged(RETRIES_METRIC, float(self.attempt - 1), series_tags)
        except Exception as e:  # a closed collector: the task itself must not fail for it
            log.error("tablewatch: could not record task run %s/%s attempt %d: %s",
                      self.pipeline, self.task, self.attempt, e)
        return run


class TaskTimer:
    """Times attempts of one task. ``with timer as attempt:``, ``async with``,
    or ``@timer`` on a sync or async function; each use is a fresh attempt."""

    def __init__(self, collector: Collector, pipeline: str, task: str, *, run_id: str | None = None,
                 attempt: int = 1, queued_at: Any = None, tags: Mapping[str, str] | None = None) -> None:
        self.collector = collector
        self.pipeline = _check_name("pipeline", pipeline)
        self.task = _check_name("task", task)
        self.run_id = None if run_id is None else _check_name("run_id", run_id)
        self.attempt = _check_attempt(attempt)
        self.queued_at = None if queued_at is None else us_to_datetime(to_us(queued_at, "queued_at"))
        self.tags = validate_tags(tags)

    def _start(self) -> TaskAttempt:
        return TaskAttempt(self.collector, self.pipeline, self.task, self.run_id or uuid.uuid4().hex,
                           self.attempt, self.queued_at, self.tags)

    def __enter__(self) -> TaskAttempt:
        attempt = self._start()
        _OPEN.set(_OPEN.get() + ((self, attempt),))
        return attempt

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stack = _OPEN.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                attempt = stack[i][1]
                _OPEN.set(stack[:i] + stack[i + 1 :])
                break
        else:
            raise RuntimeError("TaskTimer.__exit__ without a matching __enter__ in this context")
        if exc is not None and exc.__traceback__ is None:
            exc = exc.with_traceback(tb)
        attempt.finish(exc)

    async def __aenter__(self) -> TaskAttempt:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return timed

    def __repr__(self) -> str:
        return f"TaskTimer({self.pipeline!r}, {self.task!r}, attempt={self.attempt})"


def _retry_on(retry_on: Any) -> tuple[type[BaseException], ...]:
    items = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ValidationTypeError("retry_on", retry_on, "must be an exception class or a tuple of them")
    return items


def _delays(backoff: Any, max_backoff: Any) -> Callable[[int], float]:
    """Seconds to wait after failed attempt ``n`` (1-based)."""
    if isinstance(max_backoff, bool) or not isinstance(max_backoff, (int, float)) or max_backoff < 0:
        raise ValidationError("max_backoff", max_backoff, "must be a number of seconds >= 0")
    if callable(backoff):
        return lambda n: min(max(0.0, float(backoff(n))), float(max_backoff))
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        raise ValidationError("backoff", backoff, "must be seconds >= 0 or a function of the attempt number")
    return lambda n: min(float(backoff) * 2 ** (n - 1), float(max_backoff))


def track(collector: Collector, fn: Callable | None = None, *, pipeline: str, task: str | None = None,
          retries: int = 0, retry_on: Any = (Exception,), backoff: Any = 0.1, max_backoff: float = 5.0,
          tags: Mapping[str, str] | None = None) -> Any:
    """Decorate ``fn`` (sync or async) so that every call is timed and retried:
    up to ``retries`` more attempts when it raises one of ``retry_on``, waiting
    ``backoff * 2**(n-1)`` seconds (capped at ``max_backoff``) after attempt n,
    or ``backoff(n)`` when it is a function. ``task`` defaults to the function's
    qualified name. The last exception is re-raised; others are not retried."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries < 65535:
        raise ValidationError("retries", retries, "must be an integer from 0 to 65534")
    pipeline = _check_name("pipeline", pipeline)
    retryable = _retry_on(retry_on)
    delay = _delays(backoff, max_backoff)
    clean_tags = validate_tags(tags)

    def decorate(func: Callable) -> Callable:
        name = _check_name("task", task if task is not None else func.__qualname__)

        def attempt_of(run_id: str, n: int) -> TaskAttempt:
            return TaskAttempt(collector, pipeline, name, run_id, n, None, clean_tags)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                run_id = uuid.uuid4().hex
                for n in range(1, retries + 2):
                    attempt = attempt_of(run_id, n)
                    try:
                        result = await func(*args, **kwargs)
                    except retryable as e:
                        if n <= retries:
                            attempt.finish(e, retrying=True)
                            await asyncio.sleep(delay(n))
                            continue
                        attempt.finish(e)
                        raise
                    except BaseException as e:
                        attempt.finish(e)
                        raise
                    attempt.finish(None)
                    return result

            return tracked_async

        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            run_id = uuid.uuid4().hex
            for n in range(1, retries + 2):
                attempt = attempt_of(run_id, n)
                try:
                    result = func(*args, **kwargs)
                except retryable as e:
                    if n <= retries:
                        attempt.finish(e, retrying=True)
                        time.sleep(delay(n))
                        continue
                    attempt.finish(e)
                    raise
                except BaseException as e:
                    attempt.finish(e)
                    raise
                attempt.finish(None)
                return result

        return tracked

    return decorate if fn is None else decorate(fn)
