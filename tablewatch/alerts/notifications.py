"""Notifications from code: ``notify(...)`` and the ``@alarm`` decorator.

::

    from tablewatch.alerts import alarm, notify

    notify("nightly export done", {"rows": 1_204_331})

    @alarm(name="resnet50")          # Slack when train() returns or raises
    def train(...):
        ...
        return {"val.acc": 0.93}     # a mapping of numbers: the run's final metrics

Both need no runner. A message goes to the alert outbox in the store first,
then to Slack (``SLACK_*`` environment variables; the console when none), so a
Slack outage loses nothing: the message stays in the outbox and the next
delivery sends it (a runner's tick, or the server after its next notify). Neither a
store nor a Slack outage ever raises into the caller: ``notify`` returns
whether Slack took the message now.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from tablewatch.errors import TablewatchError, ValidationError

log = logging.getLogger("tablewatch.alerts")

F = TypeVar("F", bound=Callable[..., Any])
SEVERITIES = ("info", "warning", "critical")
NOTE_FIELDS = ("text", "fields", "title", "severity", "channel")


@dataclass(frozen=True)
class Note:
    """A message from code (``notify``, ``POST /api/v1/notify``), checked."""

    text: str
    fields: dict[str, str]
    title: str | None
    severity: str
    channel: str | None

    def record(self, created_at: float | None = None) -> Any:
        """The outbox record of this message, rendered for Slack."""
        from tablewatch.alerts.delivery import new_note
        from tablewatch.alerts.slack import render_note

        fallback, blocks = render_note(self.text, self.fields, title=self.title, severity=self.severity)
        return new_note(fallback, channel=self.channel, blocks=blocks, created_at=created_at)


def check_note(text: Any = None, fields: Any = None, title: Any = None, severity: Any = "info",
               channel: Any = None) -> Note:
    """Check a message's parts; :class:`ValidationError` names the bad one."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("text", text, "must be a non-empty string")
    if fields is not None and not isinstance(fields, Mapping):
        raise ValidationError("fields", fields, "must map names to values")
    if title is not None and not isinstance(title, str):
        raise ValidationError("title", title, "must be a string")
    if severity not in SEVERITIES:
        raise ValidationError("severity", severity, f"must be one of {', '.join(SEVERITIES)}")
    if channel is not None and not isinstance(channel, str):
        raise ValidationError("channel", channel, "must be a string")
    return Note(text, {str(k): str(v) for k, v in (fields or {}).items()}, title, severity, channel)


def notify(text: str, fields: Mapping[str, Any] | None = None, *, title: str | None = None, severity: str = "info",
           channel: str | None = None, store: Any = None, notifier: Any = None) -> bool:
    """Send ``text`` (with ``fields``, shown as a table) to Slack through the
    outbox of ``store`` (a Store, a store URL, or None: ``$TABLEWATCH_STORE``,
    else ./tablewatch.db). True when Slack accepted it now; False when it waits
    in the outbox (or, the store being down too, could not be sent)."""
    from tablewatch.alerts.delivery import send_now
    from tablewatch.alerts.slack import Message, NotifierError, notifier_from_env

    note = check_note(text, fields, title, severity, channel)
    notifier = notifier if notifier is not None else notifier_from_env(os.environ)
    record = note.record()
    opened = None
    try:
        from tablewatch.alerts.state import AlertState

        if store is None or isinstance(store, str):
            from tablewatch.store import open_store

            store = opened = open_store(store)
        return send_now(AlertState(store), notifier, record)
    except TablewatchError as e:  # the store is down: say it straight to Slack, best effort
        log.warning("tablewatch: alert store unavailable (%s); sending without the outbox", e)
        try:
            notifier.send(Message(record.text, record.blocks, channel=note.channel))
            return True
        except NotifierError as e2:
            log.error("tablewatch: notification lost, store and Slack both unavailable: %s", e2)
            return False
    finally:
        if opened is not None:
            opened.close()


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    found = {}
    for key, number in value.items():
        if isinstance(key, str) and isinstance(number, (int, float)) and not isinstance(number, bool) \
                and math.isfinite(number):
            found[key] = float(number)
    return found


def where_raised(error: BaseException) -> str | None:
    """``file:line`` of the innermost frame of ``error``'s traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def alarm(fn: F | None = None, *, name: str | None = None, collector: Any = None, store: Any = None,
          notifier: Any = None, channel: str | None = None, params: Mapping[str, Any] | None = None,
          on_success: bool = True) -> Any:
    """Decorate a training function: when it returns, Slack hears its duration
    and final metrics (a returned mapping of numbers, else the last values it
    logged in the run); when it raises, the exception type, message and
    file:line — and the exception goes on up. The run is recorded through
    ``collector`` (one is made on ``store`` when not given). Usable as
    ``@alarm`` or ``@alarm(name=...)``."""

    def decorate(function: F) -> F:
        run_name = name or function.__name__

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            own = None
            use = collector
            if use is None:
                try:
                    from tablewatch.collectors.sdk import Collector

                    use = own = Collector(store)
                except Exception as e:  # the run is not recorded, the job still runs
                    log.warning("tablewatch: cannot record the run %s: %s", run_name, e)
            run = use.run(run_name, params=params) if use is not None else None
            started = time.monotonic()
            try:
                with run if run is not None else nullcontext():
                    result = function(*args, **kwargs)
                    metrics = _numbers(result)
                    if run is not None and metrics:
                        run.summary(metrics)
            except BaseException as error:
                seconds = time.monotonic() - started
                fields = {"duration": f"{seconds:.1f} s", "exception": type(error).__name__,
                          "message": str(error)[:500] or "–", "at": where_raised(error) or "–"}
                if run is not None:
                    fields["run"] = run.run_id
                _say(f"Training *{run_name}* failed after {seconds:.1f} s: {type(error).__name__}: {error}"[:2000],
                     fields, f"{run_name} failed", "critical", channel, store, notifier, own)
                raise
            seconds = time.monotonic() - started
            if run is not None and not metrics:
                metrics = dict(run.record.metrics or {})
            if on_success:
                fields = {"duration": f"{seconds:.1f} s", **{k: f"{v:.6g}" for k, v in sorted(metrics.items())}}
                if run is not None:
                    fields["run"] = run.run_id
                _say(f"Training *{run_name}* finished in {seconds:.1f} s", fields, f"{run_name} finished", "info",
                     channel, store, notifier, own)
            elif own is not None:
                own.close()
            return result

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def _say(text: str, fields: dict[str, Any], title: str, severity: str, channel: str | None, store: Any,
         notifier: Any, own: Any) -> None:
    try:
        if own is not None:
            own.close()
        notify(text, fields, title=title, severity=severity, channel=channel, store=store, notifier=notifier)
    except Exception:  # a notification never breaks the job it reports on
        log.exception("tablewatch: could not notify about %s", title)
