"""End to end with real processes: ``tablewatch alerts run`` and ``tablewatch
server`` against one embedded store, Slack played by a local stand-in that the
real slack_sdk clients talk to.

A task-duration regression and a drifting feature → pending → firing → one
message per rule with the expected blocks → a signed Retrain click runs the
action once (more clicks do not) → the data recovers → resolved. Then: a
runner killed again and again (mid-cycle included) and restarted, with Slack
down for a while: no message lost, none doubled; two runners on one store:
one message.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest

from tablewatch.alerts.detectors import sketch_of
from tablewatch.alerts.state import AlertState
from tablewatch.store import TaskRun, TrainingRun, open_store
from tablewatch.store.sketches import SketchRecord
from tests.alerts.engine_fixtures import click_payload, signed_click, slack  # noqa: F401 (fixture)
from tests.store.bigtable_emulator import free_port

H, DAY = 3600, 86400
SECRET = "e2e-signing-secret"
WRITER = "ab" * 8

RULES = """
dashboard_url: http://dash.example:8501
slack: {{channel: "#ml-alerts"}}
actions:
  retrain:
    kind: command
    command: ["sh", "-c", "echo \\"$TABLEWATCH_RULE $TABLEWATCH_INCIDENT $TABLEWATCH_USER\\" >> {marker}"]
rules:
  - name: etl-slow
    kind: regression
    source: task_runs
    pipeline: nightly-etl
    measure: duration_s
    aggregate: p95
    window: 1d
    baseline: {{kind: previous, windows: 2}}
    threshold: 0.5
    for: 2s
    severity: critical
    action: retrain
  - name: ranker-drift
    kind: drift
    model: ranker
    features: [age]
    reference: {{kind: window, window: 2d}}
    window: 1d
    for: 2s
    action: retrain
"""


def fill(store, now: float, *, slow: bool = True, drift: bool = True) -> None:
    """Three days of hourly runs and sketches; the last day slow / drifted."""
    rng = np.random.default_rng(11)
    runs, sketches = [], []
    for h in range(1, 3 * 24):
        start = datetime.fromtimestamp(now - h * H, timezone.utc)
        for task, base in (("extract", 41.0 if slow and h < 24 else 20.0), ("load", 5.0)):
            took = base + float(rng.normal(0, 0.5))
            runs.append(TaskRun("nightly-etl", task, f"{task}-{h}", "success", started_at=start,
                                ended_at=start + timedelta(seconds=took)))
        mean = 46.0 if drift and h < 24 else 40.0
        window_start = int((now - h * H) // H * H)
        sketches.append(SketchRecord("ranker", "age", window_start * 1_000_000, H, WRITER, 0 if drift else 1,
                                     sketch_of(rng.normal(mean, 10, 300))))
    store.write_task_runs(runs)
    store.write_sketches(sketches)


def recover(store, now: float) -> None:
    """The same runs and windows, rewritten as they should have been."""
    fill(store, now, slow=False, drift=False)


@pytest.fixture
def setup(tmp_path, slack):
    url = f"sqlite:///{tmp_path}/tw.db"
    now = time.time()
    with open_store(url) as store:
        fill(store, now)
    marker = tmp_path / "retrained.txt"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(marker=marker))
    env = {**os.environ, "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "#fallback",
           "TABLEWATCH_SLACK_API_URL": slack.api_url, "SLACK_SIGNING_SECRET": SECRET,
           "TABLEWATCH_INGEST_TOKEN": "t0ken"}
    env.pop("SLACK_WEBHOOK_URL", None)
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "tablewatch.cli", *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        processes.append(process)
        return process

    def runner(*extra: str) -> subprocess.Popen:
        return start("alerts", "run", "--rules", str(rules), "--store", url, "--every", "0.5", "--lease-ttl", "3",
                     *extra)

    yield {"url": url, "now": now, "marker": marker, "rules": rules, "start": start, "runner": runner, "env": env}
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def firing_messages(slack):
    return [c for c in slack.calls("chat.postMessage") if "[FIRING]" in c["text"]]


def test_regression_and_drift_fire_retrain_once_then_resolve(setup, slack):
    port = free_port()
    server = setup["start"]("server", "--store", setup["url"], "--port", str(port), "--rules", str(setup["rules"]),
                            "--log-level", "warning")
    runner = setup["runner"]()
    with open_store(setup["url"]) as store:
        state = AlertState(store)
        pending = wait(lambda: [a for a in state.alerts() if a.state == "pending"], what="pending alerts")
        assert {a.rule for a in pending} <= {"etl-slow", "ranker-drift"}
        wait(lambda: len(firing_messages(slack)) >= 2, what="two firing messages")
        time.sleep(1.0)  # more cycles: still one message per rule
        messages = {m["text"].split("] ")[1].split(" ")[0]: m for m in firing_messages(slack)}
        assert len(firing_messages(slack)) == 2 and set(messages) == {"etl-slow", "ranker-drift"}
        etl = messages["etl-slow"]
        assert etl["channel"] == "#ml-alerts" and etl["text"].startswith("[FIRING] etl-slow (critical): nightly-etl/extract")
        blocks = str(etl["blocks"])
        assert "task=extract" in blocks and "task=load" not in blocks  # load did not regress
        assert "vs baseline 2" in blocks and "current *4" in blocks
        assert "http://dash.example:8501/tasks?pipeline=nightly-etl&task=extract" in blocks
        drift = str(messages["ranker-drift"]["blocks"])
        assert "feature=age" in drift and "drift `age`" in drift and "vs threshold" in drift
        assert "http://dash.example:8501/drift?model=ranker&feature=age" in drift
        assert [e["action_id"] for e in etl["blocks"][-1]["elements"]] == ["retrain", "snooze", "acknowledge"]

        wait(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200 if server.poll() is None
             else pytest.fail(server.stderr.read().decode()), what="the server")
        nid = etl["blocks"][-1]["elements"][0]["value"]
        for user in ("U1", "U2", "U3"):
            body, headers = signed_click(SECRET, click_payload("retrain", nid, user, slack.response_url(user)))
            response = httpx.post(f"http://127.0.0.1:{port}/slack/actions", content=body, headers=headers)
            assert response.status_code == 200
            wait(lambda: len(state.actions()) >= {"U1": 1, "U2": 2, "U3": 3}[user], what=f"{user}'s click")
        lines = setup["marker"].read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith("etl-slow ") and lines[0].endswith(" U1")
        assert sorted(a.result for a in state.actions()) == ["already-done", "already-done", "ran"]
        assert "Retrain ran" in str(slack.wait_for(1, "response_url")[0]["blocks"])

        recover(store, setup["now"])
        updates = wait(lambda: len(slack.calls("chat.update")) >= 2 and slack.calls("chat.update"),
                       what="messages rewritten as resolved")
        time.sleep(1.0)
    assert {u["ts"] for u in updates} == {etl["ts"], messages["ranker-drift"]["ts"]}
    assert all("[RESOLVED]" in u["blocks"][0]["text"]["text"] for u in updates)
    replies = [c for c in slack.calls("chat.postMessage") if c.get("thread_ts")]
    assert sorted(r["thread_ts"] for r in replies) == sorted([etl["ts"], messages["ranker-drift"]["ts"]])
    assert len(setup["marker"].read_text().splitlines()) == 1
    assert runner.poll() is None
    status = subprocess.run([sys.executable, "-m", "tablewatch.cli", "alerts", "status", "--store", setup["url"],
                             "--max-age", "30"], capture_output=True, text=True, env=setup["env"])
    assert status.returncode == 0 and "0 alerts pending or firing" in status.stdout


def test_killed_runners_and_slack_down_lose_nothing_double_nothing(setup, slack):
    slack.stop()  # Slack is down when the alerts fire
    rng = random.Random(5)
    for _ in range(3):  # killed at random points, mid-cycle included
        runner = setup["runner"]()
        time.sleep(rng.uniform(1.0, 2.5))
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    runner = setup["runner"]()
    with open_store(setup["url"]) as store:
        state = AlertState(store)
        queued = wait(lambda: len(state.outbox()) == 2 and state.outbox(), what="two queued messages")
        assert {a.state for a in state.alerts()} == {"firing"} and slack.calls() == []
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        slack.start()  # back, on the same port
        setup["runner"]()
        wait(lambda: len(firing_messages(slack)) >= 2, what="the queued messages")
        time.sleep(1.0)
        assert len(firing_messages(slack)) == 2 and len(slack.calls()) == 2
        assert {n.id for n in queued} == {n.id for n in state.notifications() if n.status == "sent"}


def test_two_runners_on_one_store_send_one_message(setup, slack):
    setup["runner"]()
    setup["runner"]()
    wait(lambda: len(firing_messages(slack)) >= 2, what="firing messages")
    time.sleep(1.0)
    assert len(firing_messages(slack)) == 2 and len(slack.calls()) == 2
    with open_store(setup["url"]) as store:
        cycle = AlertState(store).last_cycle()
        assert cycle["errors"] == []


def test_status_is_a_health_check(setup):
    status = [sys.executable, "-m", "tablewatch.cli", "alerts", "status", "--store", setup["url"], "--max-age", "5"]
    never = subprocess.run(status, capture_output=True, text=True, env=setup["env"])
    assert never.returncode == 1 and "no cycle yet" in never.stderr
    once = subprocess.run([sys.executable, "-m", "tablewatch.cli", "alerts", "run", "--rules", str(setup["rules"]),
                           "--store", setup["url"], "--once"], capture_output=True, text=True, env=setup["env"])
    assert once.returncode == 0, once.stderr
    assert once.stdout.startswith("leader: 2 rules evaluated")
    fresh = subprocess.run(status, capture_output=True, text=True, env=setup["env"])
    assert fresh.returncode == 0 and "2 alerts pending or firing" in fresh.stdout
    assert "pending  etl-slow" in fresh.stdout
    stale = subprocess.run(status[:-1] + ["0.001"], capture_output=True, text=True, env=setup["env"])
    assert stale.returncode == 1 and "older than" in stale.stderr


def test_once_with_a_webhook_sends_regression_drift_and_new_data(setup, slack):
    with open_store(setup["url"]) as store:
        now = setup["now"]
        store.write_training_run(TrainingRun("ranker", "train-7", "success",
                                             datetime.fromtimestamp(now - 2 * DAY, timezone.utc),
                                             datetime.fromtimestamp(now - 2 * DAY + H, timezone.utc)))
        store.write_points("data.rows", {"source": "clicks"}, [now - 10 * H, now - 5 * H], [30_000.0, 25_000.0])
    rules = setup["rules"]
    rules.write_text(rules.read_text().replace("    for: 2s\n", "") + """
  - name: fresh-data
    kind: new_data
    training_run: ranker
    at_least: 50000
    action: retrain
""")
    env = {**setup["env"], "SLACK_WEBHOOK_URL": slack.webhook_url}
    del env["SLACK_BOT_TOKEN"]
    once = [sys.executable, "-m", "tablewatch.cli", "alerts", "run", "--rules", str(rules), "--store", setup["url"],
            "--once"]
    first = subprocess.run(once, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("leader: 3 rules evaluated, 3 notifications, 3 sent")
    calls = slack.calls("webhook")
    texts = sorted(c["text"] for c in calls)
    assert [t.split(" ")[0] for t in texts] == ["[FIRING]", "[FIRING]", "[NEW_DATA]"]
    ask = next(c for c in calls if c["text"].startswith("[NEW_DATA]"))
    assert "55,000 new data.rows since training run train-7" in ask["text"]
    assert [e["text"]["text"] for e in ask["blocks"][-1]["elements"]] == ["Train!", "Nope!"]
    time.sleep(0.2)
    again = subprocess.run(once + ["--every", "0.1"], capture_output=True, text=True, env=env)
    assert again.returncode == 0 and again.stdout.startswith("leader: 3 rules evaluated, 0 notifications")
    assert len(slack.calls()) == 3  # the next cycle: nothing new to say
