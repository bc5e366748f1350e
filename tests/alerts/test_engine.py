"""The engine's state machine, grouping, silences, events, restarts and the
lease, with an injected clock and a scripted evaluate (the observations)."""

from __future__ import annotations

import pytest

from tablewatch.alerts.engine import Engine
from tablewatch.alerts.rules import parse_rules
from tablewatch.alerts.slack import WebAPINotifier
from tablewatch.alerts.state import AlertState
from tests.alerts.engine_fixtures import FakeClock, Obs, Script, slack  # noqa: F401 (fixture)

RULES = """
dashboard_url: http://dash.local:8501
slack: {channel: "#ml", mentions: {critical: ["<!here>"]}}
actions:
  retrain: {kind: command, command: "true"}
rules:
  - name: etl-slow
    kind: threshold
    metric: task.duration_s
    op: ">"
    value: 10
    for: 5m
    keep_firing_for: 2m
    repeat_interval: 1h
    action: retrain
    every: 60
  - name: train-done
    kind: task_event
    training_run: ranker
    on: [success, failure]
    every: 60
"""


def make_engine(store, slack, clock, script, text=RULES, **kwargs):
    notifier = WebAPINotifier(slack.token, "#ml", base_url=slack.api_url, min_interval_s=0)
    return Engine(parse_rules(text), store, notifier=notifier, clock=clock, evaluate=script, every_s=60, **kwargs)


def slow(task, value=20.0, active=True):
    return Obs({"pipeline": "etl", "task": task}, active, value, 8.0, 10.0, f"{task} p95 {value} s vs 8 s",
               {"file_line": "etl/extract.py:42"}, f"/tasks?pipeline=etl&task={task}")


def test_pending_firing_grouped_repeat_resolved(store, slack):
    clock, script = FakeClock(), Script()
    engine = make_engine(store, slack, clock, script)
    state = engine.state
    script.set("etl-slow", slow("extract"), slow("load"), slow("clean"), slow("ok", 5.0, active=False))
    engine.cycle()
    assert {a.state for a in state.alerts()} == {"pending"} and len(state.alerts()) == 3
    assert slack.calls() == []
    clock.advance(180)
    engine.cycle()  # 3 min < for: 5 min
    assert {a.state for a in state.alerts()} == {"pending"}
    clock.advance(180)
    report = engine.cycle()
    assert {a.state for a in state.alerts()} == {"firing"}
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 1 and report.sent == 1  # three series, one message: no storm
    message = posts[0]
    assert message["channel"] == "#ml" and "[FIRING] etl-slow" in message["text"]
    assert message["text"].startswith("<!here>") is False  # warning: no mention
    header = message["blocks"][0]
    assert header["type"] == "header" and "etl-slow (3 alerts)" in header["text"]["text"]
    body = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b)
    assert "current *20* vs baseline 8 (threshold 10)" in body and "`etl/extract.py:42`" in body
    assert "<http://dash.local:8501/tasks?pipeline=etl&task=extract|Open in the dashboard>" in body
    buttons = [e["action_id"] for e in message["blocks"][-1]["elements"]]
    assert buttons == ["retrain", "snooze", "acknowledge"]
    assert "confirm" in message["blocks"][-1]["elements"][0]
    # still firing: nothing more until repeat_interval, then one reply in the thread
    clock.advance(60)
    engine.cycle()
    assert len(slack.calls()) == 1
    clock.advance(3600)
    engine.cycle()
    replies = slack.calls("chat.postMessage")[1:]
    assert len(replies) == 1 and replies[0]["thread_ts"] == message["ts"] and "STILL FIRING" in replies[0]["text"]
    # one series recovers: within keep_firing_for it stays firing, then resolves
    script.set("etl-slow", slow("extract"), slow("load"))
    clock.advance(60)
    engine.cycle()
    assert state.alert(state.alerts()[0].fingerprint).state == "firing"
    assert len(slack.calls()) == 2
    clock.advance(120)
    engine.cycle()
    states = {a.labels["task"]: a.state for a in state.alerts()}
    assert states == {"extract": "firing", "load": "firing", "clean": "resolved"}
    resolved = slack.calls("chat.postMessage")[2]
    assert resolved["thread_ts"] == message["ts"] and "[RESOLVED] etl-slow" in resolved["text"]
    assert slack.calls("chat.update") == []  # the message still has firing alerts
    # all recover: the original message is rewritten as resolved
    script.set("etl-slow")
    clock.advance(60)
    engine.cycle()
    clock.advance(121)
    engine.cycle()
    updates = slack.calls("chat.update")
    assert len(updates) == 1 and updates[0]["ts"] == message["ts"]
    assert "[RESOLVED]" in updates[0]["blocks"][0]["text"]["text"]
    assert not any(b["type"] == "actions" for b in updates[0]["blocks"])
    incidents = state.incidents()
    assert len(incidents) == 3 and {i.state for i in incidents} == {"resolved"}
    log = state.notifications()
    assert {n.kind for n in log} == {"firing", "repeat", "resolved", "update"} and all(n.status == "sent" for n in log)


def fired_by_fresh_engines(store, slack):
    """etl-slow goes pending then firing across two fresh engines of runner r1:
    one Slack message. The (clock, script) to go on with."""
    clock, script = FakeClock(), Script()
    script.set("etl-slow", slow("extract"))
    make_engine(store, slack, clock, script, runner="r1").cycle()
    clock.advance(400)
    make_engine(store, slack, clock, script, runner="r1").cycle()
    assert len(slack.calls()) == 1
    return clock, script


def test_pending_that_goes_away_is_forgotten_and_firing_again_is_a_new_incident(store, slack):
    clock, script = FakeClock(), Script()
    engine = make_engine(store, slack, clock, script)
    script.set("etl-slow", slow("extract"))
    engine.cycle()
    first = engine.state.alerts()[0]
    script.set("etl-slow", slow("extract", active=False))
    clock.advance(60)
    engine.cycle()
    assert engine.state.alerts() == [] and engine.state.incidents() == []
    script.set("etl-slow", slow("extract"))
    clock.advance(60)
    engine.cycle()
    assert engine.state.alerts()[0].incident_id != first.incident_id


def test_restarted_runner_does_not_renotify_and_remembers(store, slack):
    clock, script = fired_by_fresh_engines(store, slack)
    for _ in range(3):  # new processes, same runner name or not (the lease is renewed by the same name)
        clock.advance(60)
        make_engine(store, slack, clock, script, runner="r1").cycle()
    assert len(slack.calls()) == 1
    assert engine_state_firing(store) == ["extract"]


def engine_state_firing(store):
    return [a.labels["task"] for a in AlertState(store).alerts(["firing"])]


def test_two_runners_one_message_and_takeover_after_the_lease(store, slack):
    clock, script = FakeClock(), Script()
    script.set("etl-slow", slow("extract"))
    a = make_engine(store, slack, clock, script, runner="a", lease_ttl_s=180)
    b = make_engine(store, slack, clock, script, runner="b", lease_ttl_s=180)
    for _ in range(8):
        assert a.cycle().role == "leader"
        assert b.cycle().role == "standby"
        clock.advance(60)
    assert len(slack.calls("chat.postMessage")) == 1
    # a dies: b stands by until the lease expires, then takes over without re-notifying
    clock.advance(60)
    assert b.cycle().role == "standby"
    clock.advance(180)
    assert b.cycle().role == "leader"
    assert len(slack.calls("chat.postMessage")) == 1
    assert AlertState(store).last_cycle()["runner"] == "b"


def test_silences_from_the_file_and_the_cli(store, slack):
    clock, script = FakeClock(), Script()
    text = RULES + """
silences:
  - matchers: {rule: etl-slow, task: load}
    ends_at: 2099-01-01T00:00:00Z
    comment: known slow
"""
    engine = make_engine(store, slack, clock, script, text=text)
    engine.state.add_silence({"alertname": "etl-slow", "task": "clean"}, ends_at=clock.now + 900,
                             created_by="ana", starts_at=clock.now)
    script.set("etl-slow", slow("extract"), slow("load"), slow("clean"))
    engine.cycle()
    clock.advance(301)
    engine.cycle()
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 1 and "etl-slow" in posts[0]["text"]
    sections = " ".join(b["text"]["text"] for b in posts[0]["blocks"] if b["type"] == "section" and "text" in b)
    assert "task=extract" in sections and "task=load" not in sections and "task=clean" not in sections
    assert {a.labels["task"]: a.state for a in engine.state.alerts()} == \
        {"extract": "firing", "load": "firing", "clean": "firing"}  # silenced alerts keep their state
    snoozed = {a.labels["task"]: a.snoozed_until for a in engine.state.alerts()}
    assert snoozed["extract"] is None and snoozed["clean"] == clock.now - 301 + 900
    # the CLI silence ends: the still-firing alert is notified then
    clock.advance(600)
    engine.cycle()
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 2 and "task=clean" in str(posts[1]["blocks"])


def test_events_notified_once_per_event_id_grouped_per_cycle(store, slack):
    clock, script = FakeClock(), Script()
    engine = make_engine(store, slack, clock, script)

    def event(run, error=None):
        details = {"event_id": f"run:{run}", "duration_s": 12.5}
        if error:
            details.update(error_type="ValueError", error_message=error, file_line="train.py:88")
        return Obs({"training_run": "ranker", "run": run}, True, 12.5, None, None,
                   f"ranker {run} {'failed' if error else 'finished'}", details, f"/training?run={run}")

    script.set("train-done", event("r1"), event("r2", "nan loss"))
    engine.cycle()
    assert len(slack.calls()) == 1
    assert "ValueError" in str(slack.calls()[0]["blocks"]) and "train.py:88" in str(slack.calls()[0]["blocks"])
    script.set("train-done", event("r1"), event("r2", "nan loss"), event("r3"))
    for _ in range(3):
        clock.advance(60)
        engine.cycle()
    calls = slack.calls()
    assert len(calls) == 2 and "ranker r3 finished" in calls[1]["text"]
    assert len(engine.state.incidents()) == 3


def test_rule_schedules_every_and_cron(store, slack):
    clock, script = FakeClock(1_800_000_000.0), Script()  # 2027-01-15T08:00:00Z, a Friday
    text = """
rules:
  - {name: often, kind: threshold, metric: m, op: ">", value: 1, every: 30}
  - {name: weekly, kind: threshold, metric: m, op: ">", value: 1, cron: "0 0 * * 2"}
  - {name: default, kind: threshold, metric: m, op: ">", value: 1}
"""
    engine = make_engine(store, slack, clock, script, text=text)
    for _ in range(12):  # 6 minutes in 30 s steps
        engine.cycle()
        clock.advance(30)
    counts = {name: sum(1 for n, _ in script.calls if n == name) for name in ("often", "weekly", "default")}
    assert counts == {"often": 12, "weekly": 1, "default": 6}
    clock.advance(4 * 86400)  # past Tuesday 00:00
    engine.cycle()
    assert sum(1 for n, _ in script.calls if n == "weekly") == 2


def test_a_broken_rule_is_reported_and_the_others_run(store, slack):
    clock, script = FakeClock(), Script()

    def evaluate(rule, store, now):
        if rule.name == "etl-slow":
            raise RuntimeError("store hiccup")
        return script(rule, store, now)

    engine = make_engine(store, slack, clock, evaluate)
    report = engine.cycle()
    assert report.errors == ["etl-slow: RuntimeError: store hiccup"] and report.rules == 1
    assert engine.state.last_cycle()["errors"] == report.errors


def test_alerts_of_a_rule_removed_from_the_file_end_quietly(store, slack):
    clock, script = fired_by_fresh_engines(store, slack)
    clock.advance(60)
    fewer = RULES[:RULES.index("  - name: train-done")].replace("  - name: etl-slow", "  - name: etl-slower")
    make_engine(store, slack, clock, script, text=fewer, runner="r1").cycle()
    assert AlertState(store).alerts() == [] and len(slack.calls()) == 1
    (incident,) = AlertState(store).incidents()
    assert (incident.rule, incident.state, incident.resolved_at) == ("etl-slow", "resolved", clock.now)
