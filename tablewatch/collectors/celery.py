"""Celery task runs, durations, retries and queue waits, from Celery's signals.

::

    app = Celery("nightly-etl", broker=...)
    collector = tablewatch.Collector()
    handle = tablewatch.collectors.celery.instrument(app, collector)   # in workers and publishers
    ...
    handle.disconnect()

Every attempt of a task becomes a :class:`~tablewatch.store.TaskRun`:
``pipeline`` = ``app.main`` (or the ``pipeline`` given), ``task`` = the task
name, ``run_id`` = the Celery task id (the same for every retry of one call),
``attempt`` = ``request.retries + 1``, ``status`` ``success`` / ``retry`` /
``failure`` (``revoked`` for a revoked task, ``skipped`` for an ignored one),
queue, start and end times, duration, ``host`` = the worker's hostname, and
for an exception its type, message and ``file:line`` of the frame that raised
it. Points (tags ``pipeline`` and ``task``, as for ``collector.task()``):

- ``task.duration_s`` per attempt;
- ``task.retries`` when a call is over (success or failure): ``attempt - 1``;
- ``task.queue_wait_s`` per attempt: from the time the message was published
  (or its ETA / countdown, when later) until the attempt started.

Queue wait needs the publish time: ``instrument()`` stamps it into the headers of
every message sent from an instrumented process (``before_task_publish``),
workers included — a retry is a new message. For messages from a process that
is not instrumented, the time the worker received the message (``task_received``)
is used where the pool runs tasks in the worker's process (solo, threads,
gevent, eventlet); with prefork the wait is then unknown and not recorded.

Celery's signals are process-global: the handlers only act for tasks of
``app`` (``sender.app is app``), so two instrumented apps in one process do not
see each other's tasks. Nothing here ever raises into a task: a failure to
record is logged on the ``"tablewatch"`` logger.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tablewatch.errors import ValidationError
from tablewatch.extras import require
from tablewatch.store.names import validate_tags
from tablewatch.store.tasks import TaskRun

signals = require("celery.signals", "celery", "tablewatch.collectors.celery")

log = logging.getLogger("tablewatch")

DURATION_METRIC = "task.duration_s"
RETRIES_METRIC = "task.retries"
QUEUE_WAIT_METRIC = "task.queue_wait_s"
#: Message header carrying the publish time (epoch seconds).
PUBLISHED_HEADER = "tablewatch_published_at"
#: Celery states at task_postrun -> TaskRun status.
STATUSES = {"SUCCESS": "success", "RETRY": "retry", "FAILURE": "failure", "REVOKED": "revoked",
            "IGNORED": "skipped", "REJECTED": "failure"}
_MAX_RECEIVED = 10_000


@dataclass
class _Attempt:
    attempt: int
    started_at: datetime
    t0: float
    queued_at: datetime | None
    host: str | None
    status: str | None = None
    error: BaseException | None = None
    error_tb: Any = None


class CeleryInstrumentation:
    """What :func:`instrument` returns: ``disconnect()`` (or use it as a context
    manager) removes the signal handlers."""

    def __init__(self, app: Any, collector: Any, pipeline: str, tags: dict[str, str]) -> None:
        self.app = app
        self.collector = collector
        self.pipeline = pipeline
        self.tags = tags
        self._uid = f"tablewatch-{uuid.uuid4().hex}"
        self._attempts: dict[str, _Attempt] = {}
        self._received: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._connections = [
            (signals.before_task_publish, self._on_publish),
            (signals.task_received, self._on_received),
            (signals.task_prerun, self._on_prerun),
            (signals.task_retry, self._on_retry),
            (signals.task_failure, self._on_failure),
            (signals.task_postrun, self._on_postrun),
        ]
        for signal, handler in self._connections:
            signal.connect(handler, weak=False, dispatch_uid=self._uid)
        self.connected = True

    def disconnect(self) -> None:
        """Remove the handlers (idempotent)."""
        if self.connected:
            for signal, handler in self._connections:
                signal.disconnect(handler, dispatch_uid=self._uid)
            self.connected = False

    def __enter__(self) -> CeleryInstrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- signal handlers (each guarded: recording must never break a task) ---------------

    def _mine(self, sender: Any) -> bool:
        return getattr(sender, "app", None) is self.app

    def _on_publish(self, sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        try:
            if not isinstance(headers, dict):
                return
            app = self.app
            if isinstance(sender, str) and (app.finalized or app.autofinalize) and sender not in app.tasks:
                return  # not a task of this app (app.tasks finalizes the app, as sending does)
            headers[PUBLISHED_HEADER] = time.time()  # a retry is a new message: its own publish time
        except Exception:
            log.exception("tablewatch: before_task_publish handler failed")

    def _on_received(self, sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        try:
            if not self._mine(sender) or request is None:
                return
            with self._lock:
                self._received[request.id] = time.time()
                while len(self._received) > _MAX_RECEIVED:
                    self._received.popitem(last=False)
        except Exception:
            log.exception("tablewatch: task_received handler failed")

    def _on_prerun(self, sender: Any = None, task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
        try:
            task = task or sender
            if not self._mine(task) or task_id is None:
                return
            request = task.request
            now = time.time()
            with self._lock:
                received = self._received.pop(task_id, None)
            queued = _queued_at(request, received, now)
            self._attempts[task_id] = _Attempt(
                attempt=(getattr(request, "retries", 0) or 0) + 1,
                started_at=datetime.fromtimestamp(now, timezone.utc),
                t0=time.perf_counter(),
                queued_at=None if queued is None else datetime.fromtimestamp(queued, timezone.utc),
                host=getattr(request, "hostname", None) or socket.gethostname(),
            )
        except Exception:
            log.exception("tablewatch: task_prerun handler failed")

    def _on_retry(self, sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None,
                  **kwargs: Any) -> None:
        try:
            if not self._mine(sender) or request is None:
                return
            attempt = self._attempts.get(request.id)
            if attempt is not None:
                attempt.status = "retry"
                attempt.error, attempt.error_tb = _exception_of(reason, einfo)
        except Exception:
            log.exception("tablewatch: task_retry handler failed")

    def _on_failure(self, sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                    traceback: Any = None, einfo: Any = None, **kwargs: Any) -> None:
        try:
            if not self._mine(sender) or task_id is None:
                return
            attempt = self._attempts.get(task_id)
            if attempt is not None:
                attempt.status = "failure"
                attempt.error = exception
                attempt.error_tb = traceback or getattr(exception, "__traceback__", None) or getattr(einfo, "tb", None)
        except Exception:
            log.exception("tablewatch: task_failure handler failed")

    def _on_postrun(self, sender: Any = None, task_id: str | None = None, task: Any = None, state: str | None = None,
                    **kwargs: Any) -> None:
        try:
            task = task or sender
            if not self._mine(task) or task_id is None:
                return
            attempt = self._attempts.pop(task_id, None)
            if attempt is not None:
                self._record(task.name, task_id, attempt, state)
        except Exception:
            log.exception("tablewatch: task_postrun handler failed")

    # -- recording -------------------------------------------------------------------------

    def _record(self, task_name: str, task_id: str, attempt: _Attempt, state: str | None) -> None:
        duration = time.perf_counter() - attempt.t0
        ended_at = datetime.now(timezone.utc)
        status = STATUSES.get(state or "", attempt.status or "success")
        error = attempt.error if status in ("retry", "failure") else None
        run = TaskRun(
            pipeline=self.pipeline, task=task_name, run_id=task_id, status=status, attempt=attempt.attempt,
            queued_at=attempt.queued_at, started_at=attempt.started_at, ended_at=ended_at, duration_s=duration,
            host=attempt.host,
            error_type=None if error is None else type(error).__qualname__,
            error_message=None if error is None else str(error),
            error_location=None if error is None else _location(attempt.error_tb),
            tags=self.tags,
        )
        self.collector.write_task_run(run)
        tags = {"pipeline": self.pipeline, "task": task_name}
        ts = ended_at.timestamp()
        self.collector.log(DURATION_METRIC, duration, tags=tags, ts=ts)
        if attempt.queued_at is not None:
            wait = max(0.0, (attempt.started_at - attempt.queued_at).total_seconds())
            self.collector.log(QUEUE_WAIT_METRIC, wait, tags=tags, ts=attempt.started_at.timestamp())
        if status != "retry":
            self.collector.log(RETRIES_METRIC, float(attempt.attempt - 1), tags=tags, ts=ts)


def instrument(
    app: Any, collector: Any, *, pipeline: str | None = None, tags: Mapping[str, str] | None = None
) -> CeleryInstrumentation:
    """Record every task attempt of the Celery ``app`` through ``collector``
    (a :class:`~tablewatch.Collector`: ``write_task_run(run)`` and ``log()``).
    ``pipeline``: the pipeline name (default ``app.main``, else ``"celery"``);
    ``tags``: extra tags of every TaskRun. Returns a handle whose
    ``disconnect()`` stops it."""
    if not hasattr(collector, "write_task_run") or not hasattr(collector, "log"):
        raise ValidationError("collector", collector, "must have write_task_run() and log() (a tablewatch.Collector)")
    name = pipeline if pipeline is not None else (getattr(app, "main", None) or "celery")
    validate_tags({"pipeline": name})
    return CeleryInstrumentation(app, collector, name, validate_tags(tags))


def _queued_at(request: Any, received: float | None, now: float) -> float | None:
    """When the attempt became runnable: publish time (header) or receive
    time, moved to the ETA when that is later."""
    published = _header(request, PUBLISHED_HEADER)
    queued = float(published) if isinstance(published, (int, float)) else received
    if queued is None:
        return None
    eta = getattr(request, "eta", None)
    if eta:
        try:
            eta_s = (datetime.fromisoformat(eta) if isinstance(eta, str) else eta).timestamp()
            queued = max(queued, min(eta_s, now))
        except (TypeError, ValueError):
            pass
    return min(queued, now)


def _header(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, Mapping):
            value = headers.get(name)
    return value


def _exception_of(reason: Any, einfo: Any) -> tuple[BaseException | None, Any]:
    """The exception that caused a retry: ``self.retry(exc=e)`` and autoretry
    carry it as ``Retry.exc``; the Retry itself otherwise."""
    exc = reason if isinstance(reason, BaseException) else getattr(einfo, "exception", None)
    cause = getattr(exc, "exc", None)
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, BaseException):
        return exc, exc.__traceback__ or getattr(einfo, "tb", None)
    return None, None


def _location(tb: Any) -> str | None:
    """``file:line`` of the innermost frame of a traceback (where it was raised)."""
    if tb is None:
        return None
    while getattr(tb, "tb_next", None) is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
