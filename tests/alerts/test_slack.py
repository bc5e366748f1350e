"""Notifiers and the outbox against a local stand-in of Slack, through the
real slack_sdk clients: Web API, incoming webhook, 429 Retry-After, 500, down."""

from __future__ import annotations

import io
import time

import pytest

from tablewatch.alerts.delivery import Delivery, DeliveryReport, new_note
from tablewatch.alerts.slack import (ConsoleNotifier, Message, NotifierError, WebAPINotifier, WebhookNotifier,
                                     notifier_from_env, render_note)
from tablewatch.alerts.state import AlertState
from tablewatch.errors import TablewatchError
from tests.alerts.engine_fixtures import FakeClock, slack  # noqa: F401 (fixture)


@pytest.fixture
def state(store):
    return AlertState(store)


def web(slack, **kwargs):
    return WebAPINotifier(slack.token, "#ml", base_url=slack.api_url, **{"min_interval_s": 0, **kwargs})


def test_web_api_posts_replies_in_thread_and_updates(slack):
    notifier = web(slack)
    text, blocks = render_note("done", {"rows": 3}, title="export")
    sent = notifier.send(Message(text, blocks))
    reply = notifier.send(Message("reply", thread_ts=sent.ts))
    notifier.update(sent.channel, sent.ts, Message("rewritten", blocks[:1]))
    post, threaded, update = slack.calls()
    assert post["method"] == "chat.postMessage" and post["channel"] == "#ml" and post["text"] == "export: done (rows=3)"
    assert post["blocks"][0]["type"] == "header" and post["blocks"][2]["fields"][0]["text"] == "*rows*\n3"
    assert threaded["thread_ts"] == sent.ts and reply.ts != sent.ts
    assert update["method"] == "chat.update" and update["ts"] == sent.ts and update["text"] == "rewritten"


def test_webhook_posts_and_cannot_update(slack):
    notifier = WebhookNotifier(slack.webhook_url, min_interval_s=0)
    notifier.send(Message("hello", [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]))
    (call,) = slack.calls("webhook")
    assert call["text"] == "hello" and call["blocks"][0]["type"] == "section"
    with pytest.raises(NotifierError, match="cannot update"):
        notifier.update("C1", "1.1", Message("x"))


def test_rate_limited_429_is_retried_after_retry_after(slack):
    notifier = web(slack)
    slack.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    notifier.send(Message("after a 429"))
    assert time.monotonic() - started >= 1.0  # Retry-After honoured by slack_sdk's handler
    assert len(slack.refused) == 1 and [c["text"] for c in slack.calls()] == ["after a 429"]


def test_500_and_down_raise_notifier_error(slack):
    notifier = web(slack)
    slack.fail_next(1, status=500)
    with pytest.raises(NotifierError, match="HTTP 500"):
        notifier.send(Message("x"))
    webhook = WebhookNotifier(slack.webhook_url, min_interval_s=0)
    slack.fail_next(1, status=500)
    with pytest.raises(NotifierError, match="500"):
        webhook.send(Message("x"))
    slack.stop()
    with pytest.raises(NotifierError):
        notifier.send(Message("x"))
    assert slack.calls() == []


def test_one_message_per_interval_per_channel(slack):
    notifier = web(slack, min_interval_s=0.25)
    for i in range(4):
        notifier.send(Message(f"m{i}"))
    notifier.send(Message("other channel", channel="#other"))
    times = [c["at"] for c in slack.calls() if c["channel"] == "#ml"]
    # the pacer spaces the sends; arrival times jitter with the machine's load,
    # so check the span of the four (three intervals), not each gap
    assert times[-1] - times[0] >= 3 * 0.25 - 0.05, times
    other = [c["at"] for c in slack.calls() if c["channel"] == "#other"][0]
    assert other - times[-1] < 0.2  # another channel does not wait


def test_console_and_the_environment():
    out = io.StringIO()
    ConsoleNotifier(out).send(Message("nothing configured"))
    assert out.getvalue() == "[tablewatch alert] nothing configured\n"
    assert isinstance(notifier_from_env({}), ConsoleNotifier)
    assert isinstance(notifier_from_env({"SLACK_WEBHOOK_URL": "http://127.0.0.1:1/hooks/x"}), WebhookNotifier)
    bot = notifier_from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL": "#ml",
                             "TABLEWATCH_SLACK_API_URL": "http://127.0.0.1:9/api"})
    assert isinstance(bot, WebAPINotifier) and bot.client.base_url == "http://127.0.0.1:9/api/"
    with pytest.raises(TablewatchError, match="SLACK_CHANNEL"):
        notifier_from_env({"SLACK_BOT_TOKEN": "xoxb-1"})


def test_outbox_slack_down_then_back_nothing_lost_nothing_doubled(slack, state):
    clock = FakeClock()
    delivery = Delivery(state, web(slack), clock=clock)
    slack.stop()
    for i in range(5):
        state.enqueue(new_note(f"message {i}", created_at=clock.now + i))
    report = delivery.deliver()
    assert (report.sent, report.failed) == (0, 1)  # one failure ends the pass: Slack is down
    assert len(state.outbox()) == 5 and state.outbox()[0].last_error
    clock.advance(1)
    assert delivery.deliver() == DeliveryReport(0, 0, 1)  # backing off; the others wait behind it
    slack.start()  # back, on the same port
    slack.fail_next(1, status=500)  # and still hiccuping once
    clock.advance(30)
    assert delivery.deliver().sent == 0
    clock.advance(30)
    report = delivery.deliver()
    assert report.sent == 5 and state.outbox() == []
    assert [c["text"] for c in slack.calls()] == [f"message {i}" for i in range(5)]  # in order, once each
    assert delivery.deliver().sent == 0
    log = {n.text: n for n in state.notifications()}
    assert log["message 0"].attempts == 3 and log["message 4"].attempts == 1
    assert all(n.status == "sent" and n.last_error is None for n in log.values())


def test_two_senders_never_send_one_message_twice(slack, state):
    clock = FakeClock()
    for i in range(6):
        state.enqueue(new_note(f"m{i}", created_at=clock.now + i))
    import threading

    deliveries = [Delivery(state, web(slack), sender=f"s{i}", clock=clock) for i in range(3)]
    threads = [threading.Thread(target=d.deliver) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in deliveries:
        d.deliver()
    assert sorted(c["text"] for c in slack.calls()) == [f"m{i}" for i in range(6)]
