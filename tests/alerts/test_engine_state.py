"""AlertState on the embedded store, the Bigtable emulator, and HBase (the
HBase backend over happybase and real Thrift, to tablewatch's gateway)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest

from tablewatch.alerts.state import ActionRecord, AlertRecord, AlertState, NotificationRecord, fingerprint
from tablewatch.errors import ValidationError
from tablewatch.gateway.hbase_thrift import HBaseThriftGateway
from tablewatch.store import open_store
from tests.store.bigtable_emulator import Emulator, find_emulator


@pytest.fixture(scope="module")
def emulator():
    if find_emulator() is None:
        pytest.fail("cbtemulator is not installed (scripts/install-system-deps.sh installs it)")
    emulator = Emulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """tablewatch's HBase Thrift gateway: the HBase backend talks to it through happybase."""
    with HBaseThriftGateway(f"sqlite:///{tmp_path_factory.mktemp('hbase')}/gateway.db", port=0) as gateway:
        yield gateway


@pytest.fixture(params=["sqlite", "bigtable", "hbase"])
def store(request, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/tw.db"
    elif request.param == "bigtable":
        url = request.getfixturevalue("emulator").url(prefix)
    else:
        url = f"hbase://127.0.0.1:{request.getfixturevalue('gateway').port}?table_prefix={prefix}&timeout_s=10"
    with open_store(url) as store:
        yield store


def alert(rule: str, labels: dict, active_at: float, state: str = "firing") -> AlertRecord:
    fp = fingerprint(rule, labels)
    return AlertRecord(AlertState.new_incident_id(fp, active_at), rule, "threshold", labels, fp, state,
                       summary=f"{rule} {labels}", value=2.0, threshold=1.0, active_at=active_at)


def test_alerts_and_incidents_round_trip_newest_first(store):
    state = AlertState(store)
    a = alert("etl-slow", {"task": "extract"}, 1000.0)
    b = alert("etl-slow", {"task": "load"}, 2000.0, "pending")
    c = alert("drift", {"model": "ranker"}, 3000.0)
    for record in (a, b, c):
        state.save_alert(record)
    assert {r.incident_id for r in state.alerts()} == {a.incident_id, b.incident_id, c.incident_id}
    assert [r.incident_id for r in state.alerts(["pending"])] == [b.incident_id]
    assert [r.incident_id for r in state.incidents()] == [c.incident_id, b.incident_id, a.incident_id]
    assert [r.incident_id for r in state.incidents(start=1500, end=3000)] == [b.incident_id]
    assert state.incidents(limit=1)[0] == c
    resolved = replace(a, state="resolved", resolved_at=4000.0)
    state.save_alert(resolved)
    assert state.alert(a.fingerprint).state == "resolved"
    assert state.incident(a.incident_id).resolved_at == 4000.0
    # an acknowledgement survives the engine rewriting the alert from what it read before
    state.acknowledge(c.incident_id, "U7", 3500.0)
    state.save_alert(replace(c, value=3.0))
    assert (state.alert(c.fingerprint).acknowledged_by, state.alert(c.fingerprint).value) == ("U7", 3.0)
    assert state.incidents(limit=1)[0].acknowledged_at == 3500.0
    with pytest.raises(ValidationError, match="states"):
        state.alerts(["on-fire"])
    # a second AlertState on the same store sees the same thing (a restarted runner)
    assert AlertState(store).incident(c.incident_id) == replace(c, value=3.0, acknowledged_by="U7",
                                                                acknowledged_at=3500.0)


def test_enqueue_once_and_outbox_until_sent(store):
    state = AlertState(store)
    record = NotificationRecord("n1", "i1", "firing", "#ml", "hello", 10.0)
    assert state.enqueue(record)
    assert not state.enqueue(replace(record, text="again"))  # the same id: nothing written
    assert [r.id for r in state.outbox()] == ["n1"]
    assert state.claim_outbox(record, "runner-a", now=100.0)
    assert not state.claim_outbox(record, "runner-b", now=101.0)  # held by runner-a
    failed = state.mark_failed(record, "HTTP 500", retry_at=105.0)
    assert failed.attempts == 1 and failed.last_error == "HTTP 500"
    assert state.claim_outbox(failed, "runner-b", now=102.0)  # released on failure
    state.mark_sent(failed, 103.0, message_ts="1.1", message_channel="C1")
    assert state.outbox() == []
    sent = state.notifications()[0]
    assert (sent.status, sent.attempts, sent.message_ts, sent.text) == ("sent", 2, "1.1", "hello")


def test_a_claim_has_one_winner_among_threads(store):
    state = AlertState(store)
    winners = []
    barrier = threading.Barrier(6)

    def contend(name):
        barrier.wait()
        if state.claim("action/incident-1", {"by": name}):
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert state.claimed("action/incident-1")["by"] == winners[0]


def test_lease_one_holder_until_it_expires(store):
    state = AlertState(store)
    assert state.acquire_lease("a", now=100.0, ttl_s=30)
    assert not state.acquire_lease("b", now=110.0, ttl_s=30)
    assert state.acquire_lease("a", now=120.0, ttl_s=30)  # renewal
    assert not state.acquire_lease("b", now=149.0, ttl_s=30)
    assert state.acquire_lease("b", now=151.0, ttl_s=30)  # expired: b takes over
    assert not state.acquire_lease("a", now=152.0, ttl_s=30)
    state.release_lease("b")
    assert state.acquire_lease("a", now=153.0, ttl_s=30)
    assert state.lease()["holder"] == "a"


def test_silences_actions_and_cycle(store):
    state = AlertState(store)
    s = state.add_silence({"alertname": "etl-slow", "task": "extract"}, ends_at=200.0, created_by="ana",
                          comment="maintenance", starts_at=100.0)
    assert state.silenced("etl-slow", {"task": "extract", "pipeline": "p"}, now=150.0) == s
    assert state.silenced("etl-slow", {"task": "load"}, now=150.0) is None
    assert state.silenced("etl-slow", {"task": "extract"}, now=250.0) is None
    state.expire_silence(s.id, now=120.0)
    assert state.silences(now=130.0) == []
    assert [x.id for x in state.silences(include_expired=True, now=130.0)] == [s.id]
    with pytest.raises(ValidationError, match="matchers"):
        state.add_silence({}, ends_at=300.0)
    with pytest.raises(ValidationError, match="ends_at"):
        state.add_silence({"a": "b"}, ends_at=50.0, starts_at=100.0)
    with pytest.raises(ValidationError, match="silence_id"):
        state.expire_silence("nope")
    state.record_action(ActionRecord("i1", "retrain", "U1", 10.0, "ran", "exit 0"))
    state.record_action(ActionRecord("i1", "retrain", "U2", 11.0, "already-done"))
    state.record_action(ActionRecord("i2", "acknowledge", "U1", 12.0, "acknowledged"))
    assert [(a.user, a.result) for a in state.actions("i1")] == [("U2", "already-done"), ("U1", "ran")]
    assert len(state.actions()) == 3
    assert state.last_cycle() is None
    state.record_cycle({"started_at": 1.0, "ended_at": 2.0, "rules": 3, "errors": [], "runner": "r"})
    assert state.last_cycle()["rules"] == 3


def test_incident_ranges_at_their_bounds(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/tw.db")
    state = AlertState(store)
    first = alert("drift", {"model": "ranker"}, 0.0)  # at the epoch itself
    second = alert("drift", {"model": "ranker"}, 1000.0)
    for record in (first, second):
        state.save_incident(record)

    def ids(**bounds):
        return [r.incident_id for r in state.incidents(**bounds)]

    assert ids(start=0) == [second.incident_id, first.incident_id]
    assert ids(start=0, end=1000) == [first.incident_id]
    assert ids(start=0, end=1000.001) == [second.incident_id, first.incident_id]
    assert ids(start=1000) == [second.incident_id]
    assert ids(start=1000.001) == []
    assert ids(end=0) == []
    assert ids(start=-5, end=0.001) == [first.incident_id]
    assert ids(start=500, end=100) == []
    assert ids(end=1e20) == [second.incident_id, first.incident_id]
    store.close()
