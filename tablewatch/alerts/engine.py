"""The engine: rules on their schedules → alerts with state → notifications.

Each alert is a rule plus a label set (one per observation
:func:`~tablewatch.alerts.evaluate.evaluate` returns), with Prometheus'
semantics::

    inactive ──active──► pending ──active for `for`──► firing ──inactive for `keep_firing_for`──► resolved
                           │ inactive: forgotten                 ▲ active again: a new incident ◄─┘

``for: 0`` fires at once. An incident begins when an alert goes pending. The
alerts of one rule that start firing in one cycle go out as **one** message
(no storm); a still-firing alert is repeated (in the message's thread) every
``repeat_interval`` unless acknowledged or silenced; a resolved one gets a
reply and its message is rewritten as resolved once all its alerts are.
Silenced alerts keep their state and are not notified. Event kinds
(``task_event``, ``new_data``) notify once per ``details["event_id"]``.

State, the notification log and the outbox live in the store
(:mod:`tablewatch.alerts.state`): a restarted runner neither re-notifies
(notification ids are derived from the incident, and enqueued once) nor
forgets. Runners on one store share a lease: the holder evaluates and
notifies; the others stand by and take over when it expires.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from tablewatch.alerts.delivery import Delivery
from tablewatch.alerts.slack import ConsoleNotifier, Notifier, format_utc, render_alerts
from tablewatch.alerts.state import AlertRecord, AlertState, NotificationRecord, fingerprint

log = logging.getLogger("tablewatch.alerts")

#: The runner's tick and the schedule of rules with neither `every` nor `cron`:
#: once a minute suits a laptop (a cycle over a few rules takes milliseconds).
DEFAULT_EVERY_S = 60.0
#: A resolved alert stays visible as "resolved" this long, then only in the history.
RESOLVED_RETENTION_S = 15 * 60.0
EVENT_KINDS = ("task_event", "new_data")


@dataclass(frozen=True)
class CycleReport:
    started_at: float
    ended_at: float
    runner: str
    role: str  # "leader" or "standby"
    rules: int = 0
    errors: list[str] = field(default_factory=list)
    enqueued: int = 0
    sent: int = 0
    failed: int = 0


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Engine:
    """Evaluates ``rules`` (a :class:`~tablewatch.alerts.rules.RuleFile`)
    against ``store`` and notifies through ``notifier`` (the console when
    None). ``clock`` (epoch seconds) and ``evaluate`` are injectable for tests;
    ``lease_ttl_s`` is how long a runner that stopped answering keeps the lease
    (default: three ticks, at least 30 s)."""

    def __init__(self, rules: Any, store: Any, *, notifier: Notifier | None = None, state: AlertState | None = None,
                 clock: Callable[[], float] = time.time, evaluate: Callable[..., list] | None = None,
                 runner: str | None = None, every_s: float = DEFAULT_EVERY_S, lease_ttl_s: float | None = None,
                 resolved_retention_s: float = RESOLVED_RETENTION_S) -> None:
        if evaluate is None:
            from tablewatch.alerts.evaluate import evaluate
        self.rules = rules
        self.store = store
        self.state = state or AlertState(store)
        self.notifier = notifier or ConsoleNotifier()
        self.clock = clock
        self.evaluate = evaluate
        self.runner = runner or runner_name()
        self.every_s = float(every_s)
        self.lease_ttl_s = lease_ttl_s if lease_ttl_s is not None else max(3 * self.every_s, 30.0)
        self.resolved_retention_s = resolved_retention_s
        self.delivery = Delivery(self.state, self.notifier, sender=self.runner, clock=clock,
                                 claim_s=self.lease_ttl_s)
        slack = getattr(rules, "slack", None)
        self.channel = getattr(slack, "channel", None)
        self.mentions = dict(getattr(slack, "mentions", None) or {})
        self.dashboard_url = getattr(rules, "dashboard_url", "http://127.0.0.1:8501")
        self._silences: list = []

    # -- scheduling ------------------------------------------------------------------

    def next_due(self, rule: Any, last: float | None) -> float:
        """When ``rule`` is next due, having last run at ``last``."""
        if last is None:
            return float("-inf")
        if getattr(rule, "cron", None):
            from tablewatch.extras import require

            croniter = require("croniter", "alerts", "a rule's cron schedule").croniter
            start = datetime.fromtimestamp(last, timezone.utc)
            return croniter(rule.cron, start).get_next(float)
        return last + (rule.every or self.every_s)

    # -- one cycle ---------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """Evaluate the rules that are due, notify, deliver the outbox. A
        runner that does not hold the lease does nothing (standby)."""
        started = self.clock()
        if not self.state.acquire_lease(self.runner, started, self.lease_ttl_s):
            return CycleReport(started, self.clock(), self.runner, "standby")
        self._sync_file_silences(started)
        self._silences = self.state.silences(now=started)
        errors: list[str] = []
        evaluated = enqueued = 0
        current = defaultdict(dict)
        for alert in self.state.alerts():
            current[alert.rule][alert.fingerprint] = alert
        self._forget_removed_rules(current, started)
        last_evaluated = self.state.rule_evaluations()
        reads = self._cycle_reads()
        renewed = started
        for rule in self.rules.rules:
            now = self.clock()
            if now - renewed > self.lease_ttl_s / 3:  # a long cycle must not let the lease lapse under it
                if not self.state.acquire_lease(self.runner, now, self.lease_ttl_s):
                    log.warning("runner %s lost the lease mid-cycle; standing by", self.runner)
                    return CycleReport(started, self.clock(), self.runner, "standby", evaluated, errors, enqueued)
                renewed = now
            if now < self.next_due(rule, last_evaluated.get(rule.name)):
                continue
            try:
                observations = self.evaluate(rule, reads, now)
            except Exception as e:  # one broken rule must not stop the others
                log.exception("rule %s failed", rule.name)
                errors.append(f"{rule.name}: {type(e).__name__}: {e}")
                continue
            evaluated += 1
            if rule.kind in EVENT_KINDS:
                enqueued += self._events(rule, observations, now)
            else:
                enqueued += self._alerts(rule, observations, current[rule.name], now)
            self.state.set_rule_evaluated(rule.name, now)
        report = self.delivery.deliver()
        ended = self.clock()
        self.state.record_cycle({"started_at": started, "ended_at": ended, "rules": evaluated, "errors": errors,
                                 "runner": self.runner, "enqueued": enqueued, "sent": report.sent,
                                 "failed": report.failed})
        return CycleReport(started, ended, self.runner, "leader", evaluated, errors, enqueued, report.sent,
                           report.failed)

    def _cycle_reads(self) -> Any:
        """The store's reads, memoized for this cycle (rules share them)."""
        from tablewatch.alerts.reads import CycleReads

        return CycleReads(self.store)

    def run(self, stop: threading.Event | None = None, max_cycles: int | None = None) -> None:
        """Cycle until ``stop`` is set (or ``max_cycles`` ran); release the lease."""
        stop = stop or threading.Event()
        cycles = 0
        try:
            while not stop.is_set():
                try:
                    report = self.cycle()
                    if report.errors:
                        log.warning("cycle errors: %s", "; ".join(report.errors))
                except Exception:  # a store outage: try again next tick
                    log.exception("alert cycle failed")
                cycles += 1
                if max_cycles is not None and cycles >= max_cycles:
                    break
                stop.wait(self._sleep_s())
        finally:
            self.release()

    def release(self) -> None:
        """Give the lease up (a standby takes over at once); never raises."""
        try:
            self.state.release_lease(self.runner)
        except Exception:
            log.warning("could not release the runner lease", exc_info=True)

    def _sleep_s(self) -> float:
        now = self.clock()
        try:
            last_evaluated = self.state.rule_evaluations()
            due = min((self.next_due(r, last_evaluated.get(r.name)) for r in self.rules.rules),
                      default=now + self.every_s)
        except Exception:
            due = now + self.every_s
        return max(0.2, min(self.every_s, due - now))

    def _forget_removed_rules(self, current: dict[str, dict[str, AlertRecord]], now: float) -> None:
        """Alerts of a rule no longer in the file end (resolved, not notified)."""
        names = {rule.name for rule in self.rules.rules}
        for name in [n for n in current if n not in names]:
            for alert in current.pop(name).values():
                if alert.state != "resolved":
                    self.state.save_incident(replace(alert, state="resolved", resolved_at=now))
                self.state.drop_alert(alert.fingerprint)

    # -- silences from the rules file ------------------------------------------------------

    def _sync_file_silences(self, now: float) -> None:
        specs = getattr(self.rules, "silences", None) or []
        known = {s.id for s in self.state.silences(include_expired=True, now=now)} if specs else set()
        for spec in specs:
            ends = spec.ends_at.timestamp() if hasattr(spec.ends_at, "timestamp") else float(spec.ends_at)
            if ends <= now:
                continue
            silence_id = "file-" + hashlib.sha256(repr((sorted(spec.matchers.items()), ends)).encode()).hexdigest()[:10]
            if silence_id not in known:
                self.state.add_silence(spec.matchers, ends, created_by="rules file", comment=spec.comment or "",
                                       starts_at=now, silence_id=silence_id)

    # -- alerts --------------------------------------------------------------------------

    def _alerts(self, rule: Any, observations: Sequence[Any], current: dict[str, AlertRecord], now: float) -> int:
        seen: set[str] = set()
        changed: dict[str, AlertRecord] = {}
        dropped: list[AlertRecord] = []
        for obs in observations:
            fp = fingerprint(rule.name, obs.labels)
            if obs.active:
                seen.add(fp)
                changed[fp] = self._active(rule, obs, fp, current.get(fp), now)
        for fp, alert in current.items():
            if fp in seen:
                continue
            if alert.state == "pending":
                dropped.append(alert)
            elif alert.state == "firing":
                last = alert.last_active_at or alert.fired_at or now
                if rule.keep_firing_for > 0 and now - last < rule.keep_firing_for:
                    continue
                changed[fp] = replace(alert, state="resolved", resolved_at=now)
            elif alert.state == "resolved" and now - (alert.resolved_at or now) > self.resolved_retention_s:
                self.state.drop_alert(fp)
        for alert in dropped:
            self.state.drop_alert(alert.fingerprint, alert.incident_id)
            current.pop(alert.fingerprint, None)
        enqueued, changed = self._notify(rule, current, changed, now)
        for fp, alert in changed.items():
            self.state.save_alert(alert)
            current[fp] = alert
        return enqueued

    def _active(self, rule: Any, obs: Any, fp: str, alert: AlertRecord | None, now: float) -> AlertRecord:
        figures = dict(summary=obs.summary, value=obs.value, baseline=obs.baseline, threshold=obs.threshold,
                       details=dict(obs.details or {}), dashboard_path=obs.dashboard_path, last_active_at=now,
                       severity=rule.severity, action=rule.action)
        if alert is None or alert.state == "resolved":
            alert = AlertRecord(AlertState.new_incident_id(fp, now), rule.name, rule.kind, dict(obs.labels), fp,
                                "pending", active_at=now, **figures)
        else:
            alert = replace(alert, **figures)
        if alert.state == "pending" and now - (alert.active_at or now) >= rule.for_:
            alert = replace(alert, state="firing", fired_at=now)
        return alert

    def _notify(self, rule: Any, current: dict[str, AlertRecord], changed: dict[str, AlertRecord],
                now: float) -> tuple[int, dict[str, AlertRecord]]:
        everything = {**current, **changed}
        firing, repeats, resolved = [], defaultdict(list), defaultdict(list)
        for fp, alert in everything.items():
            silence = None if alert.state == "resolved" else next(
                (s for s in self._silences if s.matches(rule.name, alert.labels, now)), None)
            if silence is not None:
                if alert.snoozed_until != silence.ends_at:
                    changed[fp] = replace(alert, snoozed_until=silence.ends_at)
                continue
            if alert.state == "firing" and alert.notified_at is None:
                firing.append(alert)
            elif alert.state == "firing" and alert.message_id and not alert.acknowledged_by \
                    and now - alert.notified_at >= rule.repeat_interval:
                repeats[alert.message_id].append(alert)
            elif alert.state == "resolved" and fp in changed and alert.message_id:
                resolved[alert.message_id].append(alert)
        enqueued = 0
        mentions = list(self.mentions.get(rule.severity, []))
        if firing:
            firing.sort(key=lambda a: sorted(a.labels.items()))
            ids = [a.incident_id for a in firing]
            nid = AlertState.notification_id("firing:" + ",".join(sorted(ids)))
            text, blocks = render_alerts(firing, state="firing", notification_id=nid, dashboard_url=self.dashboard_url,
                                         has_action=bool(rule.action), mentions=mentions)
            enqueued += self._enqueue(NotificationRecord(nid, ids[0], "firing", self.channel, text, now, rule=rule.name,
                                                         incident_ids=ids, blocks=blocks))
            for alert in firing:
                changed[alert.fingerprint] = replace(alert, notified_at=now, message_id=nid, snoozed_until=None)
        for message_id, group in repeats.items():
            ids = [a.incident_id for a in group]
            turn = int((now - min(a.fired_at or now for a in group)) // max(rule.repeat_interval, 1e-9))
            nid = AlertState.notification_id(f"repeat:{message_id}:{turn}:" + ",".join(sorted(ids)))
            text, blocks = render_alerts(group, state="repeat", notification_id=nid, dashboard_url=self.dashboard_url,
                                         has_action=bool(rule.action), mentions=mentions)
            enqueued += self._enqueue(NotificationRecord(nid, ids[0], "repeat", self.channel, text, now, rule=rule.name,
                                                         incident_ids=ids, blocks=blocks, thread_of=message_id))
            for alert in group:
                changed[alert.fingerprint] = replace(changed.get(alert.fingerprint, alert), notified_at=now)
        for message_id, group in resolved.items():
            ids = [a.incident_id for a in group]
            nid = AlertState.notification_id(f"resolved:{message_id}:" + ",".join(sorted(ids)))
            text, blocks = render_alerts(group, state="resolved", notification_id=nid, dashboard_url=self.dashboard_url)
            enqueued += self._enqueue(NotificationRecord(nid, ids[0], "resolved", self.channel, text, now,
                                                         rule=rule.name, incident_ids=ids, blocks=blocks,
                                                         thread_of=message_id))
            original = self.state.notification(message_id)
            members = [a for a in everything.values() if a.message_id == message_id]
            if original is not None and members and all(a.state == "resolved" for a in members):
                members.sort(key=lambda a: sorted(a.labels.items()))
                text, blocks = render_alerts(members, state="resolved", notification_id=message_id,
                                             dashboard_url=self.dashboard_url,
                                             footer=f"Resolved at {format_utc(now)}")
                uid = AlertState.notification_id(f"update-resolved:{message_id}")
                # a millisecond later: the outbox sends it after the reply
                enqueued += self._enqueue(NotificationRecord(uid, original.incident_id, "update", self.channel, text,
                                                             now + 0.001, rule=rule.name, incident_ids=original.incident_ids,
                                                             blocks=blocks, update_of=message_id))
        return enqueued, changed

    # -- events ----------------------------------------------------------------------------

    def _events(self, rule: Any, observations: Sequence[Any], now: float) -> int:
        fresh = []
        for obs in observations:
            event_id = (obs.details or {}).get("event_id")
            if not obs.active or event_id is None:
                continue
            if self.state.claimed(f"event/{rule.name}/{event_id}") is None:
                fresh.append((str(event_id), obs))
        if not fresh:
            return 0
        records = []
        for event_id, obs in fresh:
            fp = fingerprint(rule.name, {**obs.labels, "event_id": event_id})
            state = "firing" if rule.kind == "new_data" else "resolved"
            records.append(AlertRecord(AlertState.new_incident_id(fp, now), rule.name, rule.kind, dict(obs.labels), fp,
                                       state, rule.severity, obs.summary, obs.value, obs.baseline, obs.threshold,
                                       dict(obs.details or {}, event_id=event_id), obs.dashboard_path, active_at=now,
                                       fired_at=now, resolved_at=None if state == "firing" else now,
                                       last_active_at=now, notified_at=now, action=rule.action))
        nid = AlertState.notification_id(f"event:{rule.name}:" + ",".join(sorted(e for e, _ in fresh)))
        records = [replace(r, message_id=nid) for r in records]
        text, blocks = render_alerts(records, state="event", notification_id=nid, dashboard_url=self.dashboard_url,
                                     has_action=bool(rule.action), mentions=list(self.mentions.get(rule.severity, [])))
        enqueued = self._enqueue(NotificationRecord(nid, records[0].incident_id, rule.kind, self.channel, text, now,
                                                    rule=rule.name, incident_ids=[r.incident_id for r in records],
                                                    blocks=blocks))
        for record, (event_id, _) in zip(records, fresh):
            self.state.save_incident(record)
            self.state.claim(f"event/{rule.name}/{event_id}", {"notification": nid})
        return enqueued

    def _enqueue(self, record: NotificationRecord) -> int:
        return int(self.state.enqueue(record))
