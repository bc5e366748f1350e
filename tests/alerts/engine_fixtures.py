"""Shared helpers of the engine, Slack, actions and notify tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.alerts.slack_standin import SlackStandIn


class FakeClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class Obs:
    """The shape of evaluate.Observation (INTERFACES.md C)."""

    labels: dict[str, str]
    active: bool
    value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    dashboard_path: str = ""


class Script:
    """An evaluate() whose observations per rule the test sets."""

    def __init__(self) -> None:
        self.by_rule: dict[str, list[Obs]] = {}
        self.calls: list[tuple[str, float]] = []

    def set(self, rule: str, *observations: Obs) -> None:
        self.by_rule[rule] = list(observations)

    def __call__(self, rule: Any, store: Any, now: float) -> list[Obs]:
        self.calls.append((rule.name, now))
        return list(self.by_rule.get(rule.name, []))


def signed_click(secret: str, payload: dict[str, Any], *, timestamp: int | None = None,
                 forge: bool = False) -> tuple[bytes, dict[str, str]]:
    """A Slack interactivity request body and its signature headers."""
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body.decode()}".encode()
    digest = hmac.new((secret + "x" if forge else secret).encode(), base, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
                  "Content-Type": "application/x-www-form-urlencoded"}


def click_payload(action_id: str, value: str, user: str = "U123", response_url: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": "block_actions", "user": {"id": user, "username": user.lower()},
                               "actions": [{"action_id": action_id, "value": value, "type": "button"}]}
    if response_url:
        payload["response_url"] = response_url
    return payload


@pytest.fixture
def slack():
    """A Slack stand-in on a free loopback port (import this fixture)."""
    standin = SlackStandIn().start()
    yield standin
    standin.stop()
