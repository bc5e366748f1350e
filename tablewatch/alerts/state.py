"""Alert state kept in the store: what the engine knows, survives a restart.

Everything lives in one table of its own, ``tw_alerts``, with one column family
``d`` (one version per cell) and one JSON cell per row, written through the
Table API so that it works on every backend (``sqlite://``, ``bigtable://``,
``hbase://``). Row keys by record type::

    alert/<fingerprint>                   the current state of one alert (rule + labels)
    incident/<inverted ms>/<incident id>  history: one row per incident, newest first
    notification/<id>                     the notification log (every message, sent or not)
    outbox/<created ms>/<id>              messages Slack has not accepted yet, oldest first
    claim/<key>                           "done once" markers taken with check_and_set
    action/<incident id>/<ms>/<nonce>     every button click and what it did
    ack/<incident id>                     who acknowledged an incident (apart: the engine rewrites alerts)
    silence/<id>                          silences (label matchers + an end time)
    lease/<name>                          the runner lease (who evaluates and notifies)
    rule/<name>                           when a rule was last evaluated (its schedule)
    cycle/last                            the last evaluation cycle

Times in records are float epoch seconds (UTC). Cell timestamps are the wall
clock in milliseconds, so that each write is the newest version whatever clock
the engine was given (tests inject one).

The one atomic primitive is the Table API's ``check_and_set``: it takes the
runner lease, makes a notification enqueued once even by two runners, claims an
outbox message for one sender at a time, and runs a rule's action once per
incident however many times its button is clicked.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from tablewatch.errors import TableExists, ValidationError
from tablewatch.store.table import DeleteRow, GCPolicy, RowMutation, SetCell, prefix_end

TABLE = "tw_alerts"
FAMILY = "d"
QUALIFIER = b"j"
STATES = ("pending", "firing", "resolved")
#: A claimed outbox message is free for another sender after this long.
CLAIM_S = 60.0
_MAX_MS = 10**13 - 1


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """The identity of an alert: its rule and label set (stable across runs)."""
    canonical = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class AlertRecord:
    """One alert (rule + labels) in one incident. ``state`` is ``pending``,
    ``firing`` or ``resolved``; times are epoch seconds or None."""

    incident_id: str
    rule: str
    kind: str
    labels: dict[str, str]
    fingerprint: str
    state: str
    severity: str = "warning"
    summary: str = ""
    value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    dashboard_path: str = ""
    active_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    snoozed_until: float | None = None
    #: the engine's own bookkeeping
    last_active_at: float | None = None
    notified_at: float | None = None
    message_id: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class NotificationRecord:
    """One message: ``status`` is ``pending`` (in the outbox) or ``sent``.

    ``kind``: ``firing``, ``repeat``, ``resolved``, ``event``, ``new_data``,
    ``notify``. ``thread_of`` names the notification whose Slack message this
    one replies to; ``update_of`` the one whose message it rewrites (resolved,
    acknowledged)."""

    id: str
    incident_id: str | None
    kind: str
    channel: str | None
    text: str
    created_at: float
    sent_at: float | None = None
    attempts: int = 0
    last_error: str | None = None
    status: str = "pending"
    rule: str | None = None
    incident_ids: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_of: str | None = None
    update_of: str | None = None
    update_text: str | None = None
    update_blocks: list[dict[str, Any]] = field(default_factory=list)
    message_ts: str | None = None
    message_channel: str | None = None
    next_attempt_at: float | None = None
    #: the last failure was Slack being unreachable: later messages wait behind this one
    blocking: bool = False


@dataclass(frozen=True)
class ActionRecord:
    """A button click: who clicked what and when, and what came of it
    (``result``: ``ran``, ``failed``, ``already-done``, ``snoozed``,
    ``acknowledged``, ``declined``, ``no-action``)."""

    incident_id: str
    action: str
    user: str
    clicked_at: float
    result: str
    detail: str = ""


@dataclass(frozen=True)
class Silence:
    """Alerts whose labels (with ``alertname`` = the rule) match every matcher
    are not notified from ``starts_at`` until ``ends_at``."""

    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def matches(self, rule: str, labels: Mapping[str, str], now: float) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        every = {"alertname": rule, "rule": rule, **labels}
        return all(every.get(name) == value for name, value in self.matchers.items())


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _dumps(record: Any) -> bytes:
    return json.dumps(asdict(record) if not isinstance(record, dict) else record,
                      separators=(",", ":"), sort_keys=True, default=str).encode()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertState:
    """The alert tables of one store (creates them on first use). Thread-safe
    as far as the backend is; every multi-writer decision goes through
    ``check_and_set``."""

    def __init__(self, store: Any) -> None:
        self.store = store
        backend = store.backend if hasattr(store, "backend") else store
        if TABLE not in backend.list_tables():
            try:
                backend.create_table(TABLE, {FAMILY: GCPolicy(max_versions=1)})
            except TableExists:
                pass  # another process created it first
        self._table = backend.table(TABLE)

    # -- cells ------------------------------------------------------------------------

    def _get(self, key: bytes) -> dict[str, Any] | None:
        raw = self._get_raw(key)
        return json.loads(raw) if raw else None

    def _get_raw(self, key: bytes) -> bytes | None:
        rows = self._table.read_rows([key])
        return rows[0].value(FAMILY, QUALIFIER) if rows else None

    def _put(self, *items: tuple[bytes, Any]) -> None:
        ts = _now_ms()
        self._table.mutate_rows([RowMutation(key, [SetCell(FAMILY, QUALIFIER, _dumps(value), ts)])
                                 for key, value in items])

    def _delete(self, *keys: bytes) -> None:
        self._table.mutate_rows([RowMutation(key, [DeleteRow()]) for key in keys])

    def _scan(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, dict[str, Any]]]:
        return [(row.key, json.loads(row.value(FAMILY, QUALIFIER)))
                for row in self._table.scan(prefix=prefix, limit=limit)]

    def _cas(self, key: bytes, expected: bytes | None, value: Any) -> bool:
        return self._table.check_and_set(key, FAMILY, QUALIFIER, expected, _dumps(value), _now_ms())

    def claim(self, key: str, value: Mapping[str, Any] | None = None) -> bool:
        """Take the marker ``key`` if nobody has: True for exactly one caller,
        ever, however many processes try at once."""
        return self._cas(b"claim/" + key.encode(), None, dict(value or {}, claimed_at=time.time()))

    def claimed(self, key: str) -> dict[str, Any] | None:
        return self._get(b"claim/" + key.encode())

    # -- alerts and incidents -----------------------------------------------------------

    @staticmethod
    def _incident_key(incident_id: str) -> bytes:
        active_ms = int(incident_id.rsplit("-", 1)[1])
        return f"incident/{_MAX_MS - active_ms:013d}/{incident_id}".encode()

    @staticmethod
    def new_incident_id(fp: str, active_at: float) -> str:
        return f"{fp[:12]}-{int(active_at * 1000)}"

    def save_alert(self, record: AlertRecord) -> None:
        """Write an alert's current state and its incident row together."""
        self._put((f"alert/{record.fingerprint}".encode(), record),
                  (self._incident_key(record.incident_id), record))

    def save_incident(self, record: AlertRecord) -> None:
        """An incident row only (events: no current alert to keep)."""
        self._put((self._incident_key(record.incident_id), record))

    def drop_alert(self, fp: str, incident_id: str | None = None) -> None:
        """Forget an alert (pending that went inactive; resolved long ago)."""
        keys = [f"alert/{fp}".encode()]
        if incident_id is not None:
            keys.append(self._incident_key(incident_id))
        self._delete(*keys)

    def alert(self, fp: str) -> AlertRecord | None:
        data = self._get(f"alert/{fp}".encode())
        return self._with_acks([_from_dict(AlertRecord, data)])[0] if data else None

    def acknowledge(self, incident_id: str, user: str, at: float) -> None:
        """Record that ``user`` acknowledged an incident. Kept in a row of its
        own, so that the engine rewriting the alert each cycle never loses it."""
        self._put((f"ack/{incident_id}".encode(), {"acknowledged_by": user, "acknowledged_at": at}))

    def _with_acks(self, records: list[AlertRecord]) -> list[AlertRecord]:
        if not records:
            return records
        rows = self._table.read_rows([f"ack/{r.incident_id}".encode() for r in records])
        acks = {row.key[len(b"ack/"):].decode(): json.loads(row.value(FAMILY, QUALIFIER)) for row in rows}
        return [replace(r, **acks[r.incident_id]) if r.incident_id in acks else r for r in records]

    def alerts(self, states: Iterable[str] | None = None) -> list[AlertRecord]:
        """The current state of every alert the engine tracks (rule + labels)."""
        wanted = set(states) if states is not None else None
        if wanted is not None and not wanted <= set(STATES):
            raise ValidationError("states", sorted(wanted), f"must be among {', '.join(STATES)}")
        records = self._with_acks([_from_dict(AlertRecord, data) for _, data in self._scan(b"alert/")])
        return sorted((r for r in records if wanted is None or r.state in wanted),
                      key=lambda r: (r.rule, sorted(r.labels.items())))

    def incident(self, incident_id: str) -> AlertRecord | None:
        try:
            data = self._get(self._incident_key(incident_id))
        except (IndexError, ValueError):
            return None
        return self._with_acks([_from_dict(AlertRecord, data)])[0] if data else None

    def incidents(self, start: float | None = None, end: float | None = None, limit: int = 200) -> list[AlertRecord]:
        """Incidents, newest first (by ``active_at``), with ``start <= active_at < end``."""
        # Keys hold _MAX_MS - active_ms in 13 digits: the range is taken on
        # active_ms within [0, _MAX_MS], so that no bound spills into 14 digits
        # (start=0 used to give an empty range).
        oldest = 0 if start is None else max(0, int(start * 1000))
        newest = _MAX_MS if end is None else min(_MAX_MS, int(end * 1000) - 1)
        if newest < oldest:
            return []
        begin = f"incident/{_MAX_MS - newest:013d}/".encode()
        stop = prefix_end(f"incident/{_MAX_MS - oldest:013d}/".encode())
        rows = self._table.scan(begin, stop, limit=limit)
        return self._with_acks([_from_dict(AlertRecord, json.loads(row.value(FAMILY, QUALIFIER))) for row in rows])

    def update_incident(self, incident_id: str, **changes: Any) -> AlertRecord | None:
        """Change an incident (and the current alert, if it is still this
        incident): snoozes and answered questions from Slack."""
        record = self.incident(incident_id)
        if record is None:
            return None
        updated = replace(record, **changes)
        current = self.alert(record.fingerprint)
        if current is not None and current.incident_id == incident_id:
            self._put((f"alert/{record.fingerprint}".encode(), replace(current, **changes)),
                      (self._incident_key(incident_id), updated))
        else:
            self.save_incident(updated)
        return updated

    # -- notifications and the outbox --------------------------------------------------

    @staticmethod
    def notification_id(dedup_key: str) -> str:
        return hashlib.sha256(dedup_key.encode()).hexdigest()[:20]

    def enqueue(self, record: NotificationRecord) -> bool:
        """Add a message to the log and the outbox, once per id: False (and
        nothing written) when a message with this id was enqueued before, by
        this process or another."""
        if not self._cas(f"notification/{record.id}".encode(), None, record):
            return False
        created_ms = int(record.created_at * 1000)
        self._put((f"outbox/{created_ms:013d}/{record.id}".encode(), {"id": record.id}))
        return True

    def notification(self, notification_id: str) -> NotificationRecord | None:
        data = self._get(f"notification/{notification_id}".encode())
        return _from_dict(NotificationRecord, data) if data else None

    def notifications(self, incident_id: str | None = None, limit: int = 200) -> list[NotificationRecord]:
        """The notification log, newest first."""
        records = [_from_dict(NotificationRecord, data) for _, data in self._scan(b"notification/")]
        if incident_id is not None:
            records = [r for r in records if r.incident_id == incident_id or incident_id in r.incident_ids]
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return records[:limit]

    def outbox(self) -> list[NotificationRecord]:
        """Messages not accepted yet, oldest first."""
        found = []
        for _, data in self._scan(b"outbox/"):
            record = self.notification(data["id"])
            if record is not None and record.status == "pending":
                found.append(record)
        return found

    def claim_outbox(self, record: NotificationRecord, sender: str, now: float, hold_s: float = CLAIM_S) -> bool:
        """Take one outbox message for sending (one sender at a time; a claim
        left by a sender that died lapses after ``hold_s``)."""
        key = f"outbox/{int(record.created_at * 1000):013d}/{record.id}".encode()
        raw = self._get_raw(key)
        if raw is None:
            return False
        data = json.loads(raw)
        if data.get("claimed_by") not in (None, sender) and data.get("claimed_until", 0) > now:
            return False
        return self._cas(key, raw, {"id": record.id, "claimed_by": sender, "claimed_until": now + hold_s})

    def release_outbox(self, record: NotificationRecord) -> None:
        key = f"outbox/{int(record.created_at * 1000):013d}/{record.id}".encode()
        self._put((key, {"id": record.id}))

    def mark_sent(self, record: NotificationRecord, sent_at: float, *, message_ts: str | None = None,
                  message_channel: str | None = None) -> NotificationRecord:
        """Slack accepted the message: log it as sent, take it out of the outbox."""
        sent = replace(record, status="sent", sent_at=sent_at, attempts=record.attempts + 1, last_error=None,
                       next_attempt_at=None, blocking=False, message_ts=message_ts, message_channel=message_channel)
        self._put((f"notification/{record.id}".encode(), sent))
        self._delete(f"outbox/{int(record.created_at * 1000):013d}/{record.id}".encode())
        return sent

    def mark_failed(self, record: NotificationRecord, error: str, retry_at: float,
                    blocking: bool = True) -> NotificationRecord:
        """Slack did not accept it: keep it in the outbox, try again at ``retry_at``."""
        failed = replace(record, attempts=record.attempts + 1, last_error=error[:500], next_attempt_at=retry_at,
                         blocking=blocking)
        self._put((f"notification/{record.id}".encode(), failed))
        self.release_outbox(record)
        return failed

    # -- actions -------------------------------------------------------------------------

    def record_action(self, record: ActionRecord) -> None:
        key = f"action/{record.incident_id}/{int(record.clicked_at * 1000):013d}/{uuid.uuid4().hex[:8]}"
        self._put((key.encode(), record))

    def actions(self, incident_id: str | None = None, limit: int = 200) -> list[ActionRecord]:
        """Button clicks, newest first."""
        prefix = f"action/{incident_id}/".encode() if incident_id else b"action/"
        records = [_from_dict(ActionRecord, data) for _, data in self._scan(prefix)]
        records.sort(key=lambda r: r.clicked_at, reverse=True)
        return records[:limit]

    # -- silences ------------------------------------------------------------------------

    def add_silence(self, matchers: Mapping[str, str], ends_at: float, created_by: str = "", comment: str = "",
                    *, starts_at: float | None = None, silence_id: str | None = None) -> Silence:
        """Silence every alert whose labels match all ``matchers`` until ``ends_at``
        (epoch seconds). ``silence_id`` makes it idempotent (rules-file silences)."""
        if not isinstance(matchers, Mapping) or not matchers:
            raise ValidationError("matchers", matchers, "must be a non-empty mapping of label to value")
        for name, value in matchers.items():
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise ValidationError(f"matchers[{name!r}]", value, "label names and values must be strings")
        if isinstance(ends_at, bool) or not isinstance(ends_at, (int, float)):
            raise ValidationError("ends_at", ends_at, "must be epoch seconds")
        starts = time.time() if starts_at is None else float(starts_at)
        if ends_at <= starts:
            raise ValidationError("ends_at", ends_at, "must be after the start of the silence")
        silence = Silence(silence_id or uuid.uuid4().hex[:12], dict(matchers), starts, float(ends_at),
                          created_by, comment)
        self._put((f"silence/{silence.id}".encode(), silence))
        return silence

    def expire_silence(self, silence_id: str, now: float | None = None) -> None:
        """End a silence now (kept in the list of expired ones)."""
        data = self._get(f"silence/{silence_id}".encode())
        if data is None:
            raise ValidationError("silence_id", silence_id, "no such silence")
        now = time.time() if now is None else now
        silence = _from_dict(Silence, data)
        self._put((f"silence/{silence_id}".encode(),
                   replace(silence, ends_at=min(silence.ends_at, now), starts_at=min(silence.starts_at, now))))

    def silences(self, include_expired: bool = False, now: float | None = None) -> list[Silence]:
        now = time.time() if now is None else now
        found = [_from_dict(Silence, data) for _, data in self._scan(b"silence/")]
        return sorted((s for s in found if include_expired or s.ends_at > now), key=lambda s: s.ends_at)

    def silenced(self, rule: str, labels: Mapping[str, str], now: float) -> Silence | None:
        return next((s for s in self.silences(now=now) if s.matches(rule, labels, now)), None)

    # -- the runner lease, schedules, the last cycle ----------------------------------------

    def acquire_lease(self, holder: str, now: float, ttl_s: float, name: str = "runner") -> bool:
        """Hold (or renew) the lease ``name`` until ``now + ttl_s``: True for
        the one holder; another may take it only once it has expired."""
        key = f"lease/{name}".encode()
        raw = self._get_raw(key)
        value = {"holder": holder, "expires_at": now + ttl_s, "renewed_at": now}
        if raw is not None:
            current = json.loads(raw)
            if current["holder"] != holder and current["expires_at"] > now:
                return False
        return self._cas(key, raw, value)

    def release_lease(self, holder: str, name: str = "runner") -> None:
        key = f"lease/{name}".encode()
        raw = self._get_raw(key)
        if raw is not None and json.loads(raw)["holder"] == holder:
            self._cas(key, raw, {"holder": holder, "expires_at": 0, "renewed_at": time.time()})

    def lease(self, name: str = "runner") -> dict[str, Any] | None:
        return self._get(f"lease/{name}".encode())

    def rule_evaluated_at(self, rule: str) -> float | None:
        data = self._get(f"rule/{rule}".encode())
        return data["evaluated_at"] if data else None

    def rule_evaluations(self) -> dict[str, float]:
        """When each rule was last evaluated (one scan)."""
        return {key[len(b"rule/"):].decode(): data["evaluated_at"] for key, data in self._scan(b"rule/")}

    def set_rule_evaluated(self, rule: str, at: float) -> None:
        self._put((f"rule/{rule}".encode(), {"evaluated_at": at}))

    def record_cycle(self, cycle: Mapping[str, Any]) -> None:
        self._put((b"cycle/last", dict(cycle)))

    def last_cycle(self) -> dict[str, Any] | None:
        """``started_at``, ``ended_at``, ``rules``, ``errors``, ``runner`` of the last cycle."""
        return self._get(b"cycle/last")
