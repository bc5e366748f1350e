"""`tablewatch demo --no-serve` in a temporary directory: the expected alerts,
read back from the store's alert state and sent to Slack (a local stand-in); a
second run, without Slack (the console), writes and notifies nothing again.
The store is filled once for the package (tests/examples/conftest.py)."""

from __future__ import annotations

from tablewatch import open_store
from tablewatch.alerts.state import AlertState
from tests.examples.conftest import run_demo


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

