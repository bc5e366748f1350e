"""The HTTP ingest API, served by a real uvicorn on a loopback port."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest

from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.store import open_store
from tablewatch.store.sketches import PREDICTION

T0 = float(int(time.time()) // 86400 * 86400 - 2 * 86400)  # a midnight two days ago: within the points' retention
TOKEN = "s3cret-token"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ingest") / "store.db"
    with open_store(f"sqlite:///{path}") as store:
        yield store


@pytest.fixture(scope="module")
def server(store):
    app = create_app(store, TOKEN, max_body_bytes=256 * 1024, max_items=5000, sketch_flush_s=0.1)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield client


def test_probes_need_no_token(server):
    assert httpx.get(server + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic czNjcmV0", "Bearer"])
def test_api_needs_the_bearer_token(server, store, header):
    headers = {"Authorization": header} if header else {}
    response = httpx.post(server + "/api/v1/points", headers=headers,
                          json=[{"metric": "auth.m", "ts": T0, "value": 1.0}])
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["field"] == "authorization"
    assert len(store.read_points("auth.m")) == 0


def test_row_points_are_written(client, store):
    points = [{"metric": "train.loss", "tags": {"run": "r1"}, "ts": T0 + i, "value": 1.0 / (i + 1), "step": i}
              for i in range(50)]
    points.append({"metric": "train.loss", "tags": {"run": "r2"}, "ts": _iso(T0 + 5), "value": 7})
    response = client.post("/api/v1/points", json=points)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 51, "points": 51, "rejected": []}
    frame = store.read_points("train.loss", {"run": "r1"})
    assert frame["value"].tolist() == [1.0 / (i + 1) for i in range(50)]
    assert frame["step"].tolist() == list(range(50))
    assert store.read_points("train.loss", {"run": "r2"})["value"].tolist() == [7.0]
    assert client.post("/api/v1/points", json=points).status_code == 200  # a retry stores nothing twice
    assert len(store.read_points("train.loss", {"run": "r1"})) == 50


def test_well_formed_batches_take_the_columnar_fast_path(client, store):
    rng = np.random.default_rng(10)
    points, expected = [], {}
    for i in range(2000):
        host, gpu = f"h{i % 3}", str(i % 2)
        tags = {"host": host, "gpu": gpu} if i % 4 else {"gpu": gpu, "host": host}  # tag order varies
        value = float(rng.normal()) if i % 5 else i  # ints and floats
        ts = T0 + i * 0.001 if i % 7 else int(T0) + i  # ints and floats
        points.append({"metric": "fast.m", "tags": tags, "ts": ts, "value": value, "step": i})
        expected.setdefault((host, gpu), []).append((round(ts * 1e6), float(value), i))
    response = client.post("/api/v1/points", json=points)
    assert response.json() == {"accepted": 2000, "points": 2000, "rejected": []}
    for (host, gpu), rows in expected.items():
        ts, values, steps = store.read_arrays("fast.m", {"host": host, "gpu": gpu})
        rows.sort()
        assert ts.tolist() == [r[0] for r in rows]
        assert values.tolist() == [r[1] for r in rows] and steps.tolist() == [r[2] for r in rows]


def test_columnar_points_are_written(client, store):
    item = {"metric": "bulk.m", "tags": {"host": "a"}, "ts": (T0 + np.arange(1000) * 0.5).tolist(),
            "values": np.arange(1000.0).tolist(), "steps": list(range(1000))}
    response = client.post("/api/v1/points", json=item)
    assert response.status_code == 200 and response.json()["points"] == 1000
    frame = store.read_points("bulk.m", {"host": "a"})
    assert len(frame) == 1000 and frame["step"].iloc[-1] == 999


def test_ndjson_keeps_the_good_lines(client, store):
    lines = [json.dumps({"metric": "nd.m", "ts": T0 + i, "value": float(i)}) for i in range(5)]
    lines.insert(2, '{"metric": "nd.m", "ts": ')  # a truncated line
    body = "\n".join(lines) + "\n\n"
    response = client.post("/api/v1/points", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 207
    answer = response.json()
    assert answer["accepted"] == 5
    assert answer["rejected"][0]["index"] == 2 and answer["rejected"][0]["field"] == "body"
    assert "line 3" in answer["rejected"][0]["error"]
    assert store.read_points("nd.m")["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # Without the content type, NDJSON is still recognised.
    plain = "\n".join(json.dumps({"metric": "nd.plain", "ts": T0 + i, "value": 1.0}) for i in range(3))
    assert client.post("/api/v1/points", content=plain).json()["accepted"] == 3


def test_mixed_valid_and_invalid_items(client, store):
    items = [
        {"metric": "mix.m", "ts": T0, "value": 1.0},
        {"ts": T0, "value": 1.0},                                     # no metric
        {"metric": "mix.m", "ts": T0 + 1, "value": "high"},           # value of the wrong type
        {"metric": "mix.m", "ts": T0 + 2},                            # no value
        {"metric": "mix.m", "tags": {"gpu": 0}, "ts": T0, "value": 1.0},  # tag value not a string
        {"metric": "mix.m", "ts": T0 * 1000, "value": 1.0},           # milliseconds
        {"metric": "mix.m", "ts": T0 + 3, "value": 1.0, "step": -1},  # negative step
        {"metric": "mix m", "ts": T0, "value": 1.0},                  # bad metric name
        {"metric": "mix.m", "ts": T0 + 4, "valeu": 1.0},              # unknown field
        {"metric": "mix.m", "ts": [T0], "values": ["x"]},             # columnar, bad value
        {"metric": "mix.m", "ts": T0 + 5, "value": 5.0},
        "not an object",
    ]
    response = client.post("/api/v1/points", json=items)
    assert response.status_code == 207, response.text
    answer = response.json()
    assert answer["accepted"] == 2 and answer["points"] == 2
    fields = {r["index"]: r["field"] for r in answer["rejected"]}
    assert fields == {1: "metric", 2: "value", 3: "value", 4: "tags['gpu']", 5: "ts", 6: "step", 7: "metric",
                      8: "valeu", 9: "values[0]", 11: "item"}
    assert all(r["error"] for r in answer["rejected"])
    assert store.read_points("mix.m")["value"].tolist() == [1.0, 5.0]


def test_request_level_refusals(client, server):
    bad = client.post("/api/v1/points", content=b'[{"metric": "x", ', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["field"] == "body" and "malformed JSON" in bad.json()["error"]
    assert client.post("/api/v1/points", content=b"\xff\xfe\x00").status_code == 400
    scalar = client.post("/api/v1/points", json=3)
    assert scalar.status_code == 400 and "array or object" in scalar.json()["error"]
    nothing_valid = client.post("/api/v1/points", json=[{"metric": "x"}])
    assert nothing_valid.status_code == 400 and nothing_valid.json()["accepted"] == 0
    empty = client.post("/api/v1/points", json=[])
    assert empty.status_code == 200 and empty.json()["accepted"] == 0


def test_limits(client):
    big = b"[" + b" " * (300 * 1024) + b"]"
    too_big = client.post("/api/v1/points", content=big)
    assert too_big.status_code == 413 and too_big.json()["field"] == "body"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b" " * 8192

    streamed = client.post("/api/v1/points", content=chunks())
    assert streamed.status_code == 413
    many = [{"metric": "lim.m", "ts": T0 + i, "value": 1.0} for i in range(5001)]
    too_many = client.post("/api/v1/points", content=json.dumps(many, separators=(",", ":")))
    assert too_many.status_code == 413 and too_many.json()["field"] == "items"


def test_task_runs(client, store):
    runs = [
        {"pipeline": "etl", "task": "extract", "run_id": "d1", "status": "success", "attempt": 1,
         "started_at": T0, "ended_at": T0 + 12.5, "host": "w1"},
        {"pipeline": "etl", "task": "extract", "run_id": "d2", "status": "exploded", "started_at": T0},
        {"pipeline": "etl", "task": "load", "run_id": "d1", "status": "failure", "attempt": 2,
         "started_at": _iso(T0 + 3600), "error_type": "IOError"},
        {"pipeline": "etl", "task": "load", "status": "success", "started_at": T0},
    ]
    response = client.post("/api/v1/tasks", json=runs)
    assert response.status_code == 207
    answer = response.json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "status"), (3, "run_id")]
    extract = store.read_task_runs("etl", "extract")
    assert [(r.run_id, r.duration_s) for r in extract] == [("d1", 12.5)]
    assert store.read_task_runs("etl", "load")[0].attempt == 2


def test_predictions_are_sketched_and_written(client, store):
    rng = np.random.default_rng(9)
    items = [{"model": "ranker", "features": {"age": float(a), "country": c}, "prediction": float(p), "ts": T0 + i}
             for i, (a, c, p) in enumerate(zip(rng.normal(40, 5, 500), rng.choice(["fr", "de"], 500),
                                               rng.uniform(0, 1, 500)))]
    items.append({"model": "ranker", "features": {"age": [1, 2]}, "prediction": 1.0})
    response = client.post("/api/v1/predictions", json=items)
    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {"index": 500, "field": "features['age']", "error": "must be a number, a string, a boolean or None (got [1, 2])"}
    ]
    deadline = time.monotonic() + 10
    while store.read_sketch("ranker", "age").count < 500 and time.monotonic() < deadline:
        time.sleep(0.05)  # the server writes sketches every sketch_flush_s
    assert store.read_sketch("ranker", "age").numeric.count == 500
    assert store.read_sketch("ranker", PREDICTION).numeric.count == 500
    assert store.read_sketch("ranker", "country").categorical.count == 500


def test_store_outage_is_a_503_with_a_reason(tmp_path):
    path = tmp_path / "locked.db"
    with open_store(f"sqlite:///{path}?busy_timeout_s=0.2") as store:
        app = create_app(store)
        with serve_in_thread(app) as url:
            point = [{"metric": "down.m", "ts": T0, "value": 1.0}]
            assert httpx.post(url + "/api/v1/points", json=point).status_code == 200
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            try:
                response = httpx.post(url + "/api/v1/points", json=[{"metric": "down.m", "ts": T0 + 1, "value": 2.0}])
                assert response.status_code == 503
                assert "store unavailable" in response.json()["error"] and response.json()["retry"] is True
                assert response.headers["retry-after"]
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            retried = httpx.post(url + "/api/v1/points", json=[{"metric": "down.m", "ts": T0 + 1, "value": 2.0}])
            assert retried.status_code == 200
            assert store.read_points("down.m")["value"].tolist() == [1.0, 2.0]
            store.close()  # the store is gone for good
            ready = httpx.get(url + "/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            assert httpx.get(url + "/healthz").status_code == 200
            gone = httpx.post(url + "/api/v1/tasks", json=[{"pipeline": "p", "task": "t", "run_id": "r",
                                                            "status": "success", "started_at": T0}])
            assert gone.status_code == 503 and "closed" in gone.json()["error"]


def test_create_app_checks_its_arguments(store):
    from tablewatch.errors import ValidationError

    with pytest.raises(ValidationError, match="max_items"):
        create_app(store, max_items=0)
    with pytest.raises(ValidationError, match="token"):
        create_app(store, token="")
