"""examples/new_data_trigger: the scheduled check asks in Slack (the stand-in)
whether to retrain; a signed Train! click on a real `tablewatch server` runs
retrain.py once, and the question is answered in Slack."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tablewatch import open_store
from tablewatch.alerts.state import AlertState
from tests.alerts.engine_fixtures import click_payload, signed_click
from tests.examples.conftest import EXAMPLES, example_env, free_port, run_example

SECRET = "d1c6b0a55e1f4e7c9a8b7c6d5e4f3a2b"


def wait_until(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    return check()


def test_train_click_starts_the_retraining(tmp_path, slack):
    url = f"sqlite:///{tmp_path}/reviews.db"
    env = example_env(url, slack, SLACK_SIGNING_SECRET=SECRET)
    for args in (("retrain.py",), ("ingest.py", "--rows", "6000")):
        done = run_example("new_data_trigger", *args, env=env)
        assert done.returncode == 0, done.stderr

    check = run_example("new_data_trigger", "-m", "tablewatch.cli", "alerts", "run", "--rules", "rules.yaml",
                        "--once", env=env)
    assert check.returncode == 0, check.stderr
    (question,) = slack.wait_for(1, "chat.postMessage")
    assert "reviews-new-data" in question["text"] and "6,000 new data.rows" in question["text"]
    buttons = {e["action_id"]: e for e in question["blocks"][-1]["elements"]}
    assert [b["text"]["text"] for b in buttons.values()] == ["Train!", "Nope!"]

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tablewatch.cli", "server", "--store", url, "--port", str(port),
                               "--rules", "rules.yaml", "--log-level", "warning"],
                              cwd=EXAMPLES / "new_data_trigger", env=env)
    try:
        assert wait_until(lambda: _healthy(port)), "the server did not start"
        body, headers = signed_click(SECRET, click_payload("train", buttons["train"]["value"], "U42",
                                                           slack.response_url("train")))
        for _ in range(2):  # clicked twice: retrains once
            assert httpx.post(f"http://127.0.0.1:{port}/slack/actions", content=body, headers=headers,
                              timeout=10).status_code == 200
        with open_store(url, create=False) as store:
            state = AlertState(store)
            actions = wait_until(lambda: (lambda found: found if len(found) >= 2 else None)(state.actions()))
            runs = store.read_training_runs("reviews")
        reply = slack.wait_for(1, "response_url")
    finally:
        server.terminate()
        server.wait(timeout=15)

    assert sorted(a.result for a in actions) == ["already-done", "ran"]
    assert len(runs) == 2 and runs[0].tags["requested_by"] == "U42"
    assert "retrained reviews" in next(a.detail for a in actions if a.result == "ran")
    assert reply and "U42" in str(reply[0])


def _healthy(port):
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
