"""`tablewatch demo --no-serve` in a temporary directory: the expected alerts,
read back from the store's alert state and sent to Slack (a local stand-in); a
second run, without Slack (the console), writes and notifies nothing again;
a third serves the server, the alert runner and the dashboard until Ctrl-C.
The store is filled once for the package (tests/examples/conftest.py)."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tablewatch import open_store
from tablewatch.alerts.state import AlertState
from tests.examples.conftest import ANCHOR, example_env, run_demo


def test_demo_fires_the_expected_alerts(demo):
    cwd, first, messages = demo
    assert (cwd / "tablewatch-demo.db").is_file()
    with open_store(f"sqlite:///{cwd}/tablewatch-demo.db", create=False) as store:
        state = AlertState(store)
        firing = {(a.rule, tuple(sorted(a.labels.items()))): a for a in state.alerts(["firing"])}
        incidents = state.incidents()
        notifications = state.notifications()
        runs = store.read_task_runs("nightly-etl", "extract", limit=1000)
        failures = [r for p, t in store.list_tasks() for r in store.read_task_runs(p, t, limit=1000)
                    if r.status in ("failure", "retry")]
        ranker_runs = store.read_training_runs("ranker", limit=100)
        churn_runs = store.read_training_runs("churn", limit=100)

    # a task-duration regression: extract's p95 about doubled over the last day
    slow = firing[("etl-slow", (("pipeline", "nightly-etl"), ("task", "extract")))]
    assert slow.value > 1.6 * slow.baseline
    assert not any(rule == "etl-slow" and dict(labels)["task"] != "extract" for rule, labels in firing)
    # a drift of the feature `age` (from day 12), and not of the stable ones
    drift = firing[("ranker-feature-drift", (("feature", "age"), ("model", "ranker")))]
    assert drift.details["features"]["age"]["drifted"]
    assert ("ranker-feature-drift", (("feature", "country"), ("model", "ranker"))) not in firing
    # a new-data retrain question (Train! / Nope!) since the last ranker run
    (question,) = [i for i in incidents if i.rule == "ranker-new-data"]
    assert question.kind == "new_data" and question.value >= 100_000
    assert question.details["run_id"] == ranker_runs[0].run_id
    # sent to Slack (configured by SLACK_*), one message per rule, and kept in the store
    assert "messages to Slack" in first.stdout
    assert {n.status for n in notifications} == {"sent"} and len(messages) == len(notifications)
    texts = [m["text"] for m in messages]
    for text in ("[FIRING] etl-slow", "[FIRING] ranker-feature-drift", "[NEW_DATA] ranker-new-data"):
        assert sum(text in t for t in texts) == 1, texts
    question = next(m for m in messages if "ranker-new-data" in m["text"])
    assert [e["text"]["text"] for e in question["blocks"][-1]["elements"]] == ["Train!", "Nope!"]
    # the workload: 14 days of runs, retries and failures with file:line, a dozen training runs per family
    assert len({r.run_id for r in runs}) == 14 * 4
    assert {r.status for r in failures} == {"failure", "retry"}
    assert all(r.error_location and "demo.py:" in r.error_location for r in failures)
    assert len(ranker_runs) == 12 and len(churn_runs) == 12
    assert [r.status for r in churn_runs].count("failure") == 1


def test_running_the_demo_again_adds_nothing(demo):
    cwd, _, _ = demo
    url = f"sqlite:///{cwd}/tablewatch-demo.db"

    def counts():
        with open_store(url, create=False) as store:
            state = AlertState(store)
            return (len(state.notifications()), len(state.incidents()),
                    sum(len(store.read_task_runs(p, t, limit=10_000)) for p, t in store.list_tasks()),
                    len(store.read_training_runs(limit=1000)))

    before = counts()
    again = run_demo(cwd)
    assert again.returncode == 0, again.stderr
    assert "already filled for this hour" in again.stdout and "messages to the console" in again.stdout
    assert "[tablewatch alert]" not in again.stdout  # nothing notified twice
    assert counts() == before



def test_the_demo_serves_until_ctrl_c(demo):
    cwd, _, _ = demo
    port = free_port_pair()
    process = subprocess.Popen([sys.executable, "-m", "tablewatch.cli", "demo", "--anchor", ANCHOR, "--port-base",
                                str(port)], cwd=cwd, env=example_env("sqlite:///unused.db"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    urls = [f"http://127.0.0.1:{port}/healthz"]
    if importlib.util.find_spec("tablewatch.dashboard") is not None:
        urls.append(f"http://127.0.0.1:{port + 1}/_stcore/health")
    try:
        deadline = time.monotonic() + 60
        while not all(answers(url) for url in urls):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        with open_store(f"sqlite:///{cwd}/tablewatch-demo.db", create=False) as store:
            state = AlertState(store)
            while runner_pid(state.last_cycle()) in (None, process.pid):  # the alert runner's first cycle
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output and "Running (Ctrl-C stops everything)" in output
    assert "tablewatch demo: stopped server, alerts" in output
    assert not any(answers(url) for url in urls)


def runner_pid(cycle):
    """The process id in the name of the runner that ran ``cycle`` (host:pid:tag)."""
    return None if cycle is None else int(cycle["runner"].split(":")[-2])


def free_port_pair():
    for _ in range(20):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
