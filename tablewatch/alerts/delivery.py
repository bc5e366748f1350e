"""The outbox: messages go to the store first, then to Slack.

Whoever wants to say something (the engine, ``notify``, the training
decorator, the server's ``/api/v1/notify``) enqueues a
:class:`~tablewatch.alerts.state.NotificationRecord` (once per id) and then
calls :meth:`Delivery.deliver`, which sends what the outbox holds, oldest
first, through a notifier. A message Slack did not accept stays in the outbox
and is tried again later (backing off), by this process or any other that
delivers; each message is claimed with ``check_and_set`` so that two senders
never post it twice. A pass stops at the first failure: when Slack is down,
the next message would fail too, and the order is kept (a message Slack
refuses for itself, ``ok: false``, is retried without holding the others up).

The one window left: a process killed after Slack accepted a message and
before the store recorded it sends that message again (at least once, never
lost).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from tablewatch.alerts.slack import Message, Notifier, NotifierError
from tablewatch.alerts.state import CLAIM_S, AlertState, NotificationRecord
from tablewatch.errors import StoreError

log = logging.getLogger("tablewatch.alerts")

#: Seconds to wait before the n-th retry of a message (the last one repeats).
BACKOFF_S = (2.0, 5.0, 15.0, 30.0, 60.0)


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    waiting: int = 0


class Delivery:
    """Sends the outbox through ``notifier`` as ``sender``. ``claim_s``: how
    long a message this sender took stays its own (a sender killed mid-send
    frees it after that; a runner uses the length of its lease)."""

    def __init__(self, state: AlertState, notifier: Notifier, *, sender: str | None = None,
                 clock: Callable[[], float] = time.time, backoff_s: tuple[float, ...] = BACKOFF_S,
                 claim_s: float = CLAIM_S) -> None:
        self.state = state
        self.claim_s = claim_s
        self.notifier = notifier
        self.sender = sender or f"sender-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.backoff_s = backoff_s

    def deliver(self, only: set[str] | None = None) -> DeliveryReport:
        """Send what the outbox holds (only the ids in ``only``, when given)."""
        sent = failed = waiting = 0
        for record in self.state.outbox():
            if only is not None and record.id not in only:
                continue
            now = self.clock()
            if record.next_attempt_at is not None and record.next_attempt_at > now:
                waiting += 1
                if record.blocking:
                    break  # Slack was unreachable: what comes after waits, in order
                continue
            parent = None
            if record.thread_of or record.update_of:
                parent = self.state.notification(record.thread_of or record.update_of)
                if parent is not None and parent.status != "sent":
                    waiting += 1  # the reply waits for its message
                    continue
            if not self.state.claim_outbox(record, self.sender, now, self.claim_s):
                waiting += 1
                continue
            try:
                ts, channel = self._send(record, parent)
            except NotifierError as e:
                retry = self.backoff_s[min(record.attempts, len(self.backoff_s) - 1)]
                self.state.mark_failed(record, str(e), now + retry, blocking=e.transient)
                log.warning("notification %s not accepted (attempt %d, next in %g s): %s",
                            record.id, record.attempts + 1, retry, e)
                failed += 1
                if e.transient:
                    break
                continue
            self.state.mark_sent(record, self.clock(), message_ts=ts, message_channel=channel)
            sent += 1
        return DeliveryReport(sent, failed, waiting)

    def _send(self, record: NotificationRecord, parent: NotificationRecord | None) -> tuple[str | None, str | None]:
        if record.kind == "update":
            if parent is None or not parent.message_ts or not self.notifier.can_update:
                return None, None  # nothing to rewrite where this notifier posts
            self.notifier.update(parent.message_channel or parent.channel or "", parent.message_ts,
                                 Message(record.text, record.blocks))
            return parent.message_ts, parent.message_channel
        thread_ts = parent.message_ts if parent is not None and self.notifier.can_thread else None
        sent = self.notifier.send(Message(record.text, record.blocks, channel=record.channel, thread_ts=thread_ts))
        return sent.ts, sent.channel


def send_now(state: AlertState, notifier: Notifier, record: NotificationRecord,
             clock: Callable[[], float] = time.time) -> bool:
    """Enqueue one message and try to send it at once (``notify``, the
    decorator, the server). True when Slack accepted it now; otherwise it
    waits in the outbox for the next delivery."""
    state.enqueue(record)
    try:
        report = Delivery(state, notifier, clock=clock).deliver(only={record.id})
    except StoreError as e:
        log.warning("could not deliver notification %s now: %s", record.id, e)
        return False
    return report.sent == 1


def new_note(text: str, *, kind: str = "notify", channel: str | None = None, blocks: list | None = None,
             created_at: float | None = None, dedup_key: str | None = None) -> NotificationRecord:
    created = time.time() if created_at is None else created_at
    notification_id = AlertState.notification_id(dedup_key or f"{kind}:{uuid.uuid4().hex}")
    return replace(NotificationRecord(notification_id, None, kind, channel, text, created), blocks=list(blocks or []))
