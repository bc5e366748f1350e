"""Slack: Block Kit messages, and the notifiers that send them.

A notifier only renders and sends; the outbox, retries and dedup are the
engine's (:mod:`tablewatch.alerts.delivery`). Three notifiers share one small
protocol (:class:`Notifier`):

- :class:`WebAPINotifier` — a bot token and a channel, through slack_sdk's
  ``WebClient``: ``chat.postMessage`` (replies in the incident's thread) and
  ``chat.update`` (resolved, acknowledged);
- :class:`WebhookNotifier` — an incoming webhook, through ``WebhookClient``
  (no threads, no updates: a reply is a new message);
- :class:`ConsoleNotifier` — no Slack configured: the text is printed.

:func:`notifier_from_env` picks one from ``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``,
``SLACK_WEBHOOK_URL`` and ``TABLEWATCH_SLACK_API_URL`` (the Web API base URL,
for a proxy or a test stand-in). Each notifier sends at most one message per
``min_interval_s`` (default 1 s) per channel, Slack's own limit, and honours
``429 Retry-After`` through slack_sdk's retry handlers.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import ModuleType
from typing import Any, Protocol, TextIO

from tablewatch.errors import TablewatchError

WEBHOOK_ENV = "SLACK_WEBHOOK_URL"
TOKEN_ENV = "SLACK_BOT_TOKEN"
CHANNEL_ENV = "SLACK_CHANNEL"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
API_URL_ENV = "TABLEWATCH_SLACK_API_URL"
DEFAULT_API_URL = "https://slack.com/api/"
MIN_INTERVAL_S = 1.0
MAX_ALERTS_SHOWN = 10
SNOOZE_S = 24 * 3600

SEVERITY_ICONS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}

# action_id of each button (the value is the notification id)
RETRAIN, SNOOZE, ACKNOWLEDGE, TRAIN, NOPE = "retrain", "snooze", "acknowledge", "train", "nope"
BUTTONS = (RETRAIN, SNOOZE, ACKNOWLEDGE, TRAIN, NOPE)


class NotifierError(TablewatchError):
    """Slack did not accept a message (down, 5xx, rate limited past the
    retries, or refused it): the message stays in the outbox. ``transient``:
    Slack could not be reached or was overloaded, so the messages behind this
    one wait too (kept in order); False when Slack refused this message itself
    (``ok: false``), which must not hold the others up."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    channel: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Sent:
    """Where a message landed (Web API only: webhooks tell nothing)."""

    channel: str | None = None
    ts: str | None = None


class Notifier(Protocol):
    """Sends messages somewhere. ``can_thread``: replies go into a thread;
    ``can_update``: an earlier message can be rewritten."""

    can_thread: bool
    can_update: bool
    channel: str | None

    def send(self, message: Message) -> Sent:
        """Post one message; raise :class:`NotifierError` when not accepted."""
        ...

    def update(self, channel: str, ts: str, message: Message) -> None:
        """Rewrite the message at (channel, ts); raise :class:`NotifierError`."""
        ...


class _Pacer:
    """At most one message per ``interval_s`` per channel."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str | None) -> None:
        with self._lock:
            now = time.monotonic()
            ready = self._last.get(channel, -1e18) + self.interval_s
            if ready > now:
                time.sleep(ready - now)
            self._last[channel] = max(now, ready)


def _slack_sdk(module: str) -> ModuleType:
    """``slack_sdk.<module>``; without the `alerts` extra, an error that names it."""
    from tablewatch.extras import require

    require("slack_sdk", "alerts", "sending to Slack")
    return require(f"slack_sdk.{module}", "alerts", "sending to Slack")


def _retry_handlers(rate_limit_retries: int) -> list:
    handlers = _slack_sdk("http_retry.builtin_handlers")
    ConnectionErrorRetryHandler, RateLimitErrorRetryHandler = (
        handlers.ConnectionErrorRetryHandler, handlers.RateLimitErrorRetryHandler)
    return [ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries)]


class WebAPINotifier:
    """A bot token and a default channel (``chat.postMessage``, ``chat.update``)."""

    can_thread = True
    can_update = True

    def __init__(self, token: str, channel: str, *, base_url: str | None = None,
                 min_interval_s: float = MIN_INTERVAL_S, timeout_s: int = 10, rate_limit_retries: int = 2) -> None:
        WebClient = _slack_sdk("web").WebClient  # noqa: N806 (slack_sdk's class)
        base = (base_url or DEFAULT_API_URL).rstrip("/") + "/"
        self.channel = channel
        self.client = WebClient(token=token, base_url=base, timeout=timeout_s,
                                retry_handlers=_retry_handlers(rate_limit_retries))
        self._pacer = _Pacer(min_interval_s)

    def send(self, message: Message) -> Sent:
        channel = message.channel or self.channel
        self._pacer.wait(channel)
        try:
            response = self.client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks or None,
                                                    thread_ts=message.thread_ts, unfurl_links=False)
        except Exception as e:  # SlackApiError, URLError, timeouts: all mean "not accepted"
            raise NotifierError(f"chat.postMessage failed: {_reason(e)}", _transient(e)) from e
        return Sent(response.get("channel") or channel, response.get("ts"))

    def update(self, channel: str, ts: str, message: Message) -> None:
        self._pacer.wait(channel)
        try:
            self.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks or [])
        except Exception as e:
            raise NotifierError(f"chat.update failed: {_reason(e)}", _transient(e)) from e


class WebhookNotifier:
    """An incoming webhook URL (one channel, fixed when the webhook was made)."""

    can_thread = False
    can_update = False

    def __init__(self, url: str, *, min_interval_s: float = MIN_INTERVAL_S, timeout_s: int = 10,
                 rate_limit_retries: int = 2) -> None:
        WebhookClient = _slack_sdk("webhook").WebhookClient  # noqa: N806 (slack_sdk's class)
        self.channel = None
        self.client = WebhookClient(url, timeout=timeout_s, retry_handlers=_retry_handlers(rate_limit_retries))
        self._pacer = _Pacer(min_interval_s)

    def send(self, message: Message) -> Sent:
        self._pacer.wait(None)
        _webhook_send(self.client, message, "webhook")
        return Sent()

    def update(self, channel: str, ts: str, message: Message) -> None:
        raise NotifierError("an incoming webhook cannot update a message")


class ConsoleNotifier:
    """No Slack configured: each message's text is printed (and the engine
    keeps it in the store, like any other)."""

    can_thread = False
    can_update = False
    channel = None

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: Message) -> Sent:
        stream = self.stream or sys.stdout
        print(f"[tablewatch alert] {message.text}", file=stream, flush=True)
        return Sent()

    def update(self, channel: str, ts: str, message: Message) -> None:
        raise NotifierError("the console cannot update a message")


def notifier_from_env(env: Mapping[str, str], *, min_interval_s: float = MIN_INTERVAL_S) -> Notifier:
    """The notifier the environment configures: a bot token and channel
    (Web API), else a webhook, else the console."""
    token, channel, webhook = env.get(TOKEN_ENV), env.get(CHANNEL_ENV), env.get(WEBHOOK_ENV)
    if token:
        if not channel:
            raise TablewatchError(f"{TOKEN_ENV} is set but {CHANNEL_ENV} is not: name the channel to post to")
        return WebAPINotifier(token, channel, base_url=env.get(API_URL_ENV) or None, min_interval_s=min_interval_s)
    if webhook:
        return WebhookNotifier(webhook, min_interval_s=min_interval_s)
    return ConsoleNotifier()


def respond(response_url: str, message: Message, *, replace_original: bool = True, timeout_s: int = 10) -> None:
    """Rewrite the message a button was clicked in, through the click's
    ``response_url`` (works for webhook and bot messages alike)."""
    WebhookClient = _slack_sdk("webhook").WebhookClient  # noqa: N806 (slack_sdk's class)
    client = WebhookClient(response_url, timeout=timeout_s, retry_handlers=_retry_handlers(1))
    _webhook_send(client, message, "response_url", replace_original=replace_original)


def _webhook_send(client: Any, message: Message, what: str, **options: Any) -> None:
    """Post through a ``WebhookClient``; :class:`NotifierError` naming ``what``
    when it fails or answers other than 200 (transient for 429 and 5xx)."""
    try:
        response = client.send(text=message.text, blocks=message.blocks or None, **options)
    except Exception as e:
        raise NotifierError(f"{what} failed: {_reason(e)}") from e
    if response.status_code != 200:
        raise NotifierError(f"{what} answered {response.status_code}: {str(response.body)[:200]}",
                            response.status_code == 429 or response.status_code >= 500)


def _transient(e: Exception) -> bool:
    status = getattr(getattr(e, "response", None), "status_code", None)
    return status is None or status == 429 or status >= 500


def _reason(e: Exception) -> str:
    response = getattr(e, "response", None)
    if response is not None and getattr(response, "status_code", None) is not None:
        error = response.get("error") if hasattr(response, "get") else None
        return f"HTTP {response.status_code}{f' ({error})' if error else ''}"
    return f"{type(e).__name__}: {e}"[:300]


# -- rendering ------------------------------------------------------------------------------


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit] or " ", "emoji": True}


def _mrkdwn(text: str, limit: int = 3000) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text[:limit] or " "}


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}"


def format_utc(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def dashboard_link(dashboard_url: str, path: str) -> str | None:
    if not path:
        return None
    return dashboard_url.rstrip("/") + "/" + path.lstrip("/")


def _alert_lines(alert: Any, dashboard_url: str) -> str:
    """The mrkdwn body of one alert: labels, summary, figures, file:line, link."""
    lines = []
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    if labels:
        lines.append(f"`{labels}`")
    if alert.summary:
        lines.append(alert.summary)
    details = alert.details or {}
    features = details.get("features") if isinstance(details.get("features"), dict) else None
    if features:
        drifted = sorted(((name, f) for name, f in features.items() if isinstance(f, dict) and f.get("drifted")),
                         key=lambda item: -(item[1].get("score") or 0))
        for name, f in drifted[:5]:
            lines.append(f"• drift `{name}`: {f.get('method', 'score')} {_number(f.get('score'))}"
                         f" vs threshold {_number(f.get('threshold'))}")
    if alert.value is not None:
        figures = f"current *{_number(alert.value)}*"
        if alert.baseline is not None:
            figures += f" vs baseline {_number(alert.baseline)}"
        if alert.threshold is not None:
            figures += f" (threshold {_number(alert.threshold)})"
        lines.append(figures)
    if details.get("error_type"):
        lines.append(f"*{details['error_type']}*: {str(details.get('error_message', ''))[:500]}")
    if details.get("file_line"):
        lines.append(f"at `{details['file_line']}`")
    link = dashboard_link(dashboard_url, alert.dashboard_path)
    if link:
        lines.append(f"<{link}|Open in the dashboard>")
    return "\n".join(lines)


def _buttons(kind: str, notification_id: str, has_action: bool, acknowledged: bool) -> dict[str, Any]:
    def button(action_id: str, text: str, style: str | None = None, confirm: dict | None = None) -> dict:
        element: dict[str, Any] = {"type": "button", "action_id": action_id, "text": _plain(text),
                                   "value": notification_id}
        if style:
            element["style"] = style
        if confirm:
            element["confirm"] = confirm
        return element

    confirm = {"title": _plain("Retrain?"), "text": _mrkdwn("This runs the rule's retrain action once for this incident."),
               "confirm": _plain("Retrain"), "deny": _plain("Cancel")}
    if kind == "new_data":
        elements = [button(TRAIN, "Train!", "primary", {**confirm, "title": _plain("Train?"), "confirm": _plain("Train!")}),
                    button(NOPE, "Nope!", "danger")]
    else:
        elements = []
        if has_action:
            elements.append(button(RETRAIN, "Retrain", "primary", confirm))
        elements.append(button(SNOOZE, "Snooze 24 h"))
        if not acknowledged:
            elements.append(button(ACKNOWLEDGE, "Acknowledge"))
    return {"type": "actions", "block_id": "tablewatch_actions", "elements": elements}


def render_alerts(alerts: Sequence[Any], *, state: str, notification_id: str, dashboard_url: str,
                  has_action: bool = False, mentions: Sequence[str] = (), footer: str | None = None,
                  buttons: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """(text fallback, blocks) for one group: the alerts of one rule that
    changed state in one cycle. ``state``: firing, repeat, resolved, event."""
    first = alerts[0]
    icon = ":white_check_mark:" if state == "resolved" else SEVERITY_ICONS.get(first.severity, ":bell:")
    word = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}.get(state, first.kind.upper())
    count = f" ({len(alerts)} alerts)" if len(alerts) > 1 else ""
    title = f"{icon} [{word}] {first.rule}{count}"
    text = f"[{word}] {first.rule} ({first.severity}): {first.summary or ''}".rstrip(": ")
    if len(alerts) > 1:
        text += f" (and {len(alerts) - 1} more)"
    if mentions and state != "resolved":
        text = " ".join(mentions) + " " + text
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(title)},
        {"type": "section", "fields": [_mrkdwn(f"*Rule*\n{first.rule}"), _mrkdwn(f"*Severity*\n{first.severity}"),
                                       _mrkdwn(f"*Kind*\n{first.kind}"),
                                       _mrkdwn(f"*Since*\n{format_utc(first.fired_at or first.active_at)}")]},
    ]
    if mentions and state != "resolved":
        blocks.append({"type": "section", "text": _mrkdwn(" ".join(mentions))})
    for alert in alerts[:MAX_ALERTS_SHOWN]:
        blocks.append({"type": "section", "text": _mrkdwn(_alert_lines(alert, dashboard_url))})
    if len(alerts) > MAX_ALERTS_SHOWN:
        blocks.append({"type": "context", "elements": [_mrkdwn(f"… and {len(alerts) - MAX_ALERTS_SHOWN} more")]})
    if footer:
        blocks.append({"type": "context", "elements": [_mrkdwn(footer)]})
    if buttons and state != "resolved":
        blocks.append(_buttons(first.kind, notification_id, has_action,
                               acknowledged=all(a.acknowledged_by for a in alerts)))
    return text, blocks


def render_note(text: str, fields: Mapping[str, Any] | None = None, *, title: str | None = None,
                severity: str = "info") -> tuple[str, list[dict[str, Any]]]:
    """(text fallback, blocks) for a plain notification (``notify``, the
    training decorator)."""
    icon = SEVERITY_ICONS.get(severity, ":bell:")
    blocks: list[dict[str, Any]] = []
    if title:
        blocks.append({"type": "header", "text": _plain(f"{icon} {title}")})
    blocks.append({"type": "section", "text": _mrkdwn(text)})
    items = list((fields or {}).items())
    for start in range(0, len(items), 10):  # Slack allows 10 fields per section
        blocks.append({"type": "section",
                       "fields": [_mrkdwn(f"*{name}*\n{value}", 2000) for name, value in items[start:start + 10]]})
    fallback = f"{title}: {text}" if title else text
    if items:
        fallback += " (" + ", ".join(f"{k}={v}" for k, v in items[:10]) + ")"
    return fallback[:3000], blocks
