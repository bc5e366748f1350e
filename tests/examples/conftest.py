"""Helpers for running the examples as their READMEs do: as programs, in their
own directory, with the store and Slack chosen by environment variables."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.alerts.slack_standin import SlackStandIn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV_CLEARED = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_WEBHOOK_URL", "SLACK_SIGNING_SECRET", "TABLEWATCH_STORE",
               "TABLEWATCH_SLACK_API_URL", "TABLEWATCH_RULES", "TABLEWATCH_INGEST_TOKEN")


def example_env(store_url: str, slack: SlackStandIn | None = None, **extra: str) -> dict[str, str]:
    """The environment an example runs in: this interpreter's bin first on
    PATH (so `python` and `tablewatch` are this virtualenv's), the store, and
    Slack's Web API at the stand-in."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_CLEARED}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TABLEWATCH_STORE"] = store_url
    env["PYTHONUNBUFFERED"] = "1"
    if slack is not None:
        env.update(SLACK_BOT_TOKEN=slack.token, SLACK_CHANNEL="#ml", TABLEWATCH_SLACK_API_URL=slack.api_url)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_example(name: str, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=EXAMPLES / name, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def slack():
    standin = SlackStandIn().start()
    yield standin
    standin.stop()


ANCHOR = str(int(time.time()) // 3600 * 3600)  # pinned: both runs write the same hour's demo


def run_demo(cwd, slack=None):
    env = example_env("sqlite:///not-used-by-the-demo.db", slack)
    return subprocess.run([sys.executable, "-m", "tablewatch.cli", "demo", "--no-serve", "--anchor", ANCHOR],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="package")
def demo(tmp_path_factory):
    """The demo's default store (./tablewatch-demo.db) in a fresh directory,
    filled once, its messages sent to a Slack stand-in."""
    cwd = tmp_path_factory.mktemp("demo")
    slack = SlackStandIn().start()
    try:
        first = run_demo(cwd, slack)
        assert first.returncode == 0, first.stderr
        return cwd, first, slack.calls("chat.postMessage")
    finally:
        slack.stop()
