"""POST /slack/actions and /api/v1/notify on a real uvicorn server: signed
clicks run the action once per incident; forged, stale, unsigned, malformed
and unknown requests are refused."""

from __future__ import annotations

import time

import httpx
import pytest

from tablewatch.alerts.engine import Engine
from tablewatch.alerts.interactive import AlertRoutes
from tablewatch.alerts.rules import parse_rules
from tablewatch.alerts.slack import WebAPINotifier
from tablewatch.alerts.state import AlertState
from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.store import open_store
from tests.alerts.engine_fixtures import FakeClock, Obs, Script, click_payload, signed_click
from tests.alerts.slack_standin import SlackStandIn

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "ingest-token"


def rules_text(marker):
    return f"""
actions:
  retrain:
    kind: command
    command: ["sh", "-c", "echo \\"$TABLEWATCH_INCIDENT $TABLEWATCH_USER $TABLEWATCH_LABEL_TASK\\" >> {marker}"]
rules:
  - {{name: etl-slow, kind: threshold, metric: m, op: ">", value: 1, action: retrain}}
  - {{name: fresh-data, kind: new_data, training_run: ranker, at_least: 1000, action: retrain}}
"""


@pytest.fixture
def world(tmp_path):
    slack = SlackStandIn().start()
    marker = tmp_path / "retrained.txt"
    rules = parse_rules(rules_text(marker))
    with open_store(f"sqlite:///{tmp_path}/tw.db") as store:
        state = AlertState(store)
        notifier = WebAPINotifier(slack.token, "#ml", base_url=slack.api_url, min_interval_s=0)
        clock, script = FakeClock(time.time()), Script()
        engine = Engine(rules, store, notifier=notifier, clock=clock, evaluate=script)
        script.set("etl-slow", Obs({"task": "extract"}, True, 5.0, 1.0, 1.0, "extract slow"),
                   Obs({"task": "load"}, True, 6.0, 1.0, 1.0, "load slow"))
        engine.cycle()
        routes = AlertRoutes(state, notifier, signing_secret=SECRET, token=TOKEN, rules=rules)
        app = create_app(store, TOKEN, routes=routes.routes())
        with serve_in_thread(app) as url:
            yield {"url": url, "slack": slack, "state": state, "marker": marker, "engine": engine, "script": script,
                   "clock": clock}
    slack.stop()


def post_click(world, payload, **kwargs):
    body, headers = signed_click(SECRET, payload, **kwargs)
    return httpx.post(world["url"] + "/slack/actions", content=body, headers=headers, timeout=10)


def wait_actions(state, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = state.actions()
        if len(found) >= count:
            return found
        time.sleep(0.02)
    return state.actions()


def test_retrain_runs_once_however_many_clicks(world):
    slack, state = world["slack"], world["state"]
    (message,) = slack.calls("chat.postMessage")
    nid = message["blocks"][-1]["elements"][0]["value"]
    started = time.monotonic()
    response = post_click(world, click_payload("retrain", nid, "U1", slack.response_url("a")))
    assert response.status_code == 200 and time.monotonic() - started < 3
    wait_actions(state, 2)  # one record per incident of the message (extract, load)
    for user in ("U2", "U3"):
        assert post_click(world, click_payload("retrain", nid, user, slack.response_url(user))).status_code == 200
    actions = wait_actions(state, 6)
    lines = world["marker"].read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" U1 extract")  # ran once, by the first click
    results = sorted((a.user, a.result) for a in actions)
    assert results == [("U1", "ran"), ("U1", "ran"), ("U2", "already-done"), ("U2", "already-done"),
                       ("U3", "already-done"), ("U3", "already-done")]
    updates = slack.wait_for(3, "response_url")
    assert "Retrain ran" in str(updates[0]["blocks"]) and updates[0]["replace_original"] is True
    assert "retrain" not in str([b for b in updates[0]["blocks"] if b["type"] == "actions"])
    assert "Retrain already ran" in str(updates[1]["blocks"])


def test_retrain_from_a_repeat_message_does_not_run_again(world):
    slack, state, engine, clock = world["slack"], world["state"], world["engine"], world["clock"]
    nid = slack.calls("chat.postMessage")[0]["blocks"][-1]["elements"][0]["value"]
    post_click(world, click_payload("retrain", nid, "U1"))
    wait_actions(state, 2)
    clock.advance(5 * 3600)
    engine.cycle()  # a repeat reply, with its own buttons
    repeat = slack.calls("chat.postMessage")[1]
    assert repeat["thread_ts"] == slack.calls("chat.postMessage")[0]["ts"]
    post_click(world, click_payload("retrain", repeat["blocks"][-1]["elements"][0]["value"], "U9"))
    actions = wait_actions(state, 4)
    assert [a.result for a in actions if a.user == "U9"] == ["already-done"] * 2
    assert len(world["marker"].read_text().splitlines()) == 1


def test_snooze_and_acknowledge(world):
    slack, state, engine, clock = world["slack"], world["state"], world["engine"], world["clock"]
    nid = slack.calls("chat.postMessage")[0]["blocks"][-1]["elements"][0]["value"]
    post_click(world, click_payload("acknowledge", nid, "U7"))
    wait_actions(state, 2)
    assert {a.acknowledged_by for a in state.alerts()} == {"U7"}
    updated = slack.wait_for(1, "chat.update")[0]  # no response_url: chat.update on the message
    assert "Acknowledged" in str(updated["blocks"]) and "acknowledge" not in str(
        [b for b in updated["blocks"] if b["type"] == "actions"])
    clock.advance(5 * 3600)
    engine.cycle()
    assert len(slack.calls("chat.postMessage")) == 1  # acknowledged: no repeat
    post_click(world, click_payload("snooze", nid, "U8"))
    wait_actions(state, 4)
    silences = state.silences()
    assert len(silences) == 2 and {s.created_by for s in silences} == {"U8"}
    assert {s.matchers["task"] for s in silences} == {"extract", "load"}
    assert all(abs(s.ends_at - time.time() - 86400) < 60 for s in silences)


def test_new_data_train_and_nope(world):
    slack, state, engine, script = world["slack"], world["state"], world["engine"], world["script"]
    script.set("fresh-data", Obs({"model": "ranker"}, True, 5000.0, None, 1000.0, "5000 new rows",
                                 {"event_id": "ranker:run-7"}))
    world["clock"].advance(60)
    engine.cycle()
    ask = slack.calls("chat.postMessage")[-1]
    buttons = [e["action_id"] for e in ask["blocks"][-1]["elements"]]
    assert buttons == ["train", "nope"] and "Train!" in str(ask["blocks"][-1])
    nid = ask["blocks"][-1]["elements"][0]["value"]
    post_click(world, click_payload("nope", nid, "U5"))
    post_click(world, click_payload("train", nid, "U6"))
    post_click(world, click_payload("train", nid, "U6"))
    actions = wait_actions(state, 3)
    assert sorted(a.result for a in actions) == ["already-done", "declined", "ran"]
    assert len(world["marker"].read_text().splitlines()) == 1
    (incident_id,) = state.notification(nid).incident_ids
    assert state.incident(incident_id).state == "resolved" and state.incident(incident_id).rule == "fresh-data"


@pytest.mark.parametrize("case", ["forged", "stale", "unsigned", "garbage-signature"])
def test_forged_stale_unsigned_get_401(world, case):
    nid = world["slack"].calls("chat.postMessage")[0]["blocks"][-1]["elements"][0]["value"]
    payload = click_payload("retrain", nid, "U1")
    if case == "forged":
        response = post_click(world, payload, forge=True)
    elif case == "stale":
        response = post_click(world, payload, timestamp=int(time.time()) - 6 * 60)
    else:
        body, headers = signed_click(SECRET, payload)
        if case == "unsigned":
            headers.pop("X-Slack-Signature")
        else:
            headers["X-Slack-Request-Timestamp"] = "not-a-number"
        response = httpx.post(world["url"] + "/slack/actions", content=body, headers=headers)
    assert response.status_code == 401
    time.sleep(0.2)
    assert world["state"].actions() == [] and not world["marker"].exists()


def test_malformed_and_unknown_get_400_naming_the_field(world):
    nid = world["slack"].calls("chat.postMessage")[0]["blocks"][-1]["elements"][0]["value"]
    body, headers = signed_click(SECRET, {})
    cases = [
        (click_payload("self-destruct", nid), "payload.actions[0].action_id"),
        (click_payload("retrain", "no-such-message"), "actions[0].value"),
        ({"type": "view_submission"}, "payload.type"),
        ({"type": "block_actions", "actions": []}, "payload.actions"),
        ({"type": "block_actions", "actions": [{"action_id": "retrain", "value": nid}]}, "payload.user.id"),
    ]
    for payload, field in cases:
        response = post_click(world, payload)
        assert response.status_code == 400 and response.json()["field"] == field, (payload, response.text)
    import hashlib
    import hmac

    ts = str(int(time.time()))
    for raw, field in ((b"payload=%7Bnot-json", "payload"), (b"nothing=1", "payload")):
        sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
        response = httpx.post(world["url"] + "/slack/actions", content=raw,
                              headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
        assert response.status_code == 400 and response.json()["field"] == field
    assert world["state"].actions() == []


def test_notify_endpoint_needs_the_token_and_goes_through_the_outbox(world):
    url, slack, state = world["url"], world["slack"], world["state"]
    body = {"text": "nightly export done", "fields": {"rows": 1204331}, "title": "export"}
    assert httpx.post(url + "/api/v1/notify", json=body).status_code == 401
    response = httpx.post(url + "/api/v1/notify", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202 and response.json()["status"] == "queued"
    posted = slack.wait_for(2, "chat.postMessage")[-1]
    assert posted["text"] == "export: nightly export done (rows=1204331)"
    deadline = time.monotonic() + 10
    while state.notification(response.json()["id"]).status != "sent" and time.monotonic() < deadline:
        time.sleep(0.02)  # Slack has it; the store hears of it just after
    assert state.notification(response.json()["id"]).status == "sent"
    bad = httpx.post(url + "/api/v1/notify", json={"text": ""}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400 and bad.json()["field"] == "text"
    bad = httpx.post(url + "/api/v1/notify", json={"text": "x", "severity": "doom"},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400 and bad.json()["field"] == "severity"
