"""One bad value never blocks the others: what cannot be stored is refused up
front naming the field, a batch the store refuses is set aside (not retried
forever, not mistaken for an outage), and the ingest API answers 400 or a
per-item rejection, never 500. Fuzzed with hypothesis against a real uvicorn
server and a real embedded store."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablewatch import Collector
from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.collectors.spool import PointsEntry, decode_batch, encode_batch
from tablewatch.errors import ValidationError
from tablewatch.store import open_store

LATIN1_NAME = os.fsdecode(b"caf\xe9")  # what os.fsdecode() makes of a latin-1 file name: a lone surrogate
T0 = float(int(time.time()) - 3600)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/tw.db"


@pytest.fixture
def store(url):
    with open_store(url) as store:
        yield store


# -- refused up front -------------------------------------------------------------------------


def test_text_that_cannot_be_utf8_encoded_is_refused_naming_the_field(store):
    assert LATIN1_NAME == "caf\udce9"
    with Collector(store, flush_interval=3600) as collector:
        with pytest.raises(ValidationError) as e:
            collector.log("loss", 1.0, tags={"file": LATIN1_NAME})
        assert e.value.field == "tags['file']" and "UTF-8" in str(e.value)
        with pytest.raises(ValidationError, match=r"tags\['file'\]"):
            collector.log_many({"a": 1.0}, tags={"file": LATIN1_NAME})
        with pytest.raises(ValidationError, match=r"runs\[0\]\.task"):
            collector.write_task_run({"pipeline": "p", "task": LATIN1_NAME, "run_id": "r", "status": "success",
                                      "started_at": T0, "ended_at": T0 + 1})
        with pytest.raises(ValidationError, match=r"run\.name"):
            collector.run(LATIN1_NAME).__enter__()
        for i in range(2000):
            collector.log("loss", float(i), step=i, tags={"file": "cafe"})
        assert collector.flush() is True
    assert len(store.read_arrays("loss", {"file": "cafe"})[0]) == 2000
    with pytest.raises(ValidationError, match=r"tags\['file'\]"):
        store.write_points("loss", {"file": LATIN1_NAME}, [T0], [1.0])


def test_a_poisoned_spool_does_not_stop_the_next_collector(store, url, tmp_path, caplog):
    """The issue's scenario: a dead collector's spool holds a batch the store
    will never take next to 2,000 good points; the next collector stores the
    good ones, sets the bad one aside once, and closes clean."""
    caplog.set_level(logging.WARNING, logger="tablewatch")
    n = 2000

    def entry(metric, tags):
        return PointsEntry(metric, tags, int(T0 * 1e6) + np.arange(n), np.arange(n, dtype=float), np.arange(n))

    dead = Path(f"{tmp_path}/tw.db.spool") / "1-deadbeef"
    dead.mkdir(parents=True)
    poisoned = [entry("good.a", {}), entry("good.b", {"file": LATIN1_NAME}), entry("good.c", {"k": "v"})]
    (dead / "000000000001.twb").write_bytes(encode_batch(poisoned, url))
    (dead / "000000000002.twb").write_bytes(encode_batch([entry("good.d", {})], url))
    collector = Collector(url, flush_interval=0.05)
    assert collector.close(timeout=10) is True
    for metric, tags in (("good.a", {}), ("good.c", {"k": "v"}), ("good.d", {})):
        assert len(store.read_arrays(metric, tags)[0]) == n
    stats = collector.stats()
    assert stats["rejected"] == n and stats["rejected_batches"] == 1 and stats["replayed"] == 3 * n
    assert stats["spool_files"] == 0 and not dead.exists()
    [kept] = Path(stats["rejected_dir"]).glob("*.twb")
    assert decode_batch(kept.read_bytes())[1][0].tags == {"file": LATIN1_NAME}
    assert "UTF-8" in kept.with_suffix(".txt").read_text()
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "unavailable" not in caplog.text  # not taken for an outage
    # The next collector finds nothing to replay: the set-aside batch is never retried.
    again = Collector(url, flush_interval=3600)
    assert again.close() is True and again.stats()["replayed"] == 0 and again.stats()["rejected"] == 0


# -- the ingest API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest(tmp_path_factory):
    path = tmp_path_factory.mktemp("ingest") / "store.db"
    with open_store(f"sqlite:///{path}", retention_s={"points": None}) as store:
        with serve_in_thread(create_app(store, max_items=5000)) as base:
            with httpx.Client(base_url=base, timeout=30) as client:
                yield client, store


def _post(client, body: bytes, content_type: str = "application/json"):
    return client.post("/api/v1/points", content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize("body, field", [
    (b"[" * 5000 + b"]" * 5000, "body"),
    (b'[{"metric": "deep", "ts": 1780000000, "value": 1' + b"0" * 400 + b"}]", "value"),
    (b'{"metric": "deep", "ts": [1780000000], "values": [1' + b"0" * 400 + b"]}", "values[0]"),
    (b'[{"metric": "deep", "ts": 1' + b"0" * 400 + b', "value": 1}]', "ts"),
    (b'[{"metric": "deep", "ts": 1e308, "value": 1}]', "ts"),
])
def test_deep_json_and_huge_numbers_are_a_400_naming_the_field(ingest, body, field):
    client, _ = ingest
    response = _post(client, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer.get("field") == field or answer["rejected"][0]["field"] == field


def test_deep_json_on_one_ndjson_line_rejects_that_line_only(ingest):
    client, store = ingest
    body = b"[" * 5000 + b"]" * 5000 + b'\n{"metric": "nd.ok", "ts": 1780000000, "value": 2}\n'
    response = _post(client, body, "application/x-ndjson")
    assert response.status_code == 207
    assert response.json()["rejected"] == [{"index": 0, "field": "body", "error": "line 1 is not JSON: nested too deeply"}]
    assert store.read_arrays("nd.ok")[1].tolist() == [2.0]


def test_an_unencodable_tag_value_rejects_its_item_only(ingest):
    client, store = ingest
    items = [{"metric": "enc.m", "tags": {"f": LATIN1_NAME}, "ts": T0, "value": 1.0},
             {"metric": "enc.m", "tags": {"f": "cafe"}, "ts": T0, "value": 2.0}]
    response = _post(client, json.dumps(items).encode())  # ensure_ascii: the surrogate travels as \udce9
    assert response.status_code == 207, response.text
    [rejected] = response.json()["rejected"]
    assert rejected["index"] == 0 and rejected["field"] == "tags['f']" and "UTF-8" in rejected["error"]
    assert store.read_arrays("enc.m", {"f": "cafe"})[1].tolist() == [2.0]


@pytest.mark.parametrize("item, field", [
    ({"metric": "steps.big", "ts": [T0], "values": [1.0], "steps": [2**70]}, "steps[0]"),
    ([{"metric": "steps.big", "ts": T0, "value": 1.0, "step": 2**70}], "step"),
])
def test_a_step_past_64_bits_is_reported_as_sent(ingest, item, field):
    client, _ = ingest
    response = _post(client, json.dumps(item).encode())
    assert response.status_code == 400
    [rejected] = response.json()["rejected"]
    assert rejected["field"] == field and str(2**70) in rejected["error"], rejected
    assert "-9223372036854775808" not in rejected["error"]


# -- fuzzing ------------------------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_.]{0,10}", fullmatch=True)
_junk_text = st.one_of(st.text(max_size=12), st.just(LATIN1_NAME), st.just(""), st.just("a" * 300))
_junk_number = st.one_of(st.integers(min_value=-(2**80), max_value=2**80), st.floats(), st.just(10**400),
                         st.booleans(), st.none())
_json_scalar = st.one_of(_junk_text, _junk_number)
_json = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(_junk_text, inner, max_size=3)),
                     max_leaves=8)


_example = iter(range(10**9))


@st.composite
def _valid_point(draw, index: int, example: int):
    # A metric of its own per example: the same point sent again in another
    # request is another chunk (stored twice), which is not what this test is about.
    item = {"metric": f"fz{example}." + draw(_names), "ts": T0 + index, "value": draw(st.floats(allow_infinity=False))}
    if draw(st.booleans()):
        item["tags"] = draw(st.dictionaries(_names, _names, max_size=3))
    if draw(st.booleans()):
        item["step"] = draw(st.integers(0, 2**53))
    return item


_junk_point = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={"metric": st.one_of(_names, _json_scalar),
                                        "tags": st.one_of(st.dictionaries(_junk_text, _json_scalar, max_size=3), _json),
                                        "ts": st.one_of(_junk_number, _junk_text, st.just(T0)),
                                        "value": _json, "step": _json, "values": _json, "extra": _json}),
)


@st.composite
def _batch(draw):
    items, valid = [], []
    example = next(_example)
    for index in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            valid.append(index)
            items.append(draw(_valid_point(index, example)))
        else:
            items.append(draw(_junk_point))
    return items, valid


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(batch=_batch(), ndjson=st.booleans())
def test_fuzz_ingest_never_500_and_keeps_every_valid_item(ingest, batch, ndjson):
    """Through a real uvicorn server: any mix of valid and junk items gets a
    200, 207 or 400, every valid item is accepted and readable, and every
    rejection names a field."""
    client, store = ingest
    items, valid = batch
    if ndjson:
        body = b"\n".join(json.dumps(item).encode() for item in items)
        response = _post(client, body, "application/x-ndjson")
    else:
        response = _post(client, json.dumps(items).encode())
    assert response.status_code in (200, 207, 400), response.text
    answer = response.json()
    rejected = {r["index"]: r for r in answer.get("rejected", [])}
    assert all(r["field"] and r["error"] for r in rejected.values())
    for index in valid:
        assert index not in rejected, (items[index], rejected[index])
        item = items[index]
        ts, values, steps = store.read_arrays(item["metric"], item.get("tags"), start=item["ts"], end=item["ts"] + 1)
        assert len(ts) == 1 and (values[0] == item["value"] or np.isnan(item["value"])), item
    assert answer["accepted"] == len(items) - len(rejected)


_log_metric = st.one_of(_names, _json_scalar)
_log_tags = st.one_of(st.none(), st.dictionaries(_names, _names, max_size=3),
                      st.dictionaries(_names, st.one_of(_names, st.just(LATIN1_NAME)), min_size=1, max_size=2),
                      st.dictionaries(st.one_of(_names, _junk_text), _json_scalar, max_size=3))
_log_value = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.just(10**400), _json_scalar, st.just(np.float32(2.5)))
_log_step = st.one_of(st.none(), st.integers(-5, 2**70), st.floats(), _junk_text)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(calls=st.lists(st.tuples(_log_metric, _log_value, _log_step, _log_tags), min_size=1, max_size=6))
def test_fuzz_collector_log_refuses_or_stores_every_point(tmp_path_factory, calls):
    """Any arguments to ``log()``: a ValidationError at once, or the point is
    stored; nothing escapes the flusher, nothing is spooled, dropped or set
    aside."""
    with open_store(f"sqlite:///{tmp_path_factory.mktemp('fz')}/tw.db") as store:
        collector = Collector(store, flush_interval=3600)
        accepted = []
        for i, (metric, value, step, tags) in enumerate(calls):
            try:
                collector.log(metric, value, step=step, ts=T0 + i, tags=tags)
            except ValidationError:
                continue
            accepted.append((metric, float(value), tags, T0 + i))
        assert collector.flush() is True
        stats = collector.stats()
        assert collector.close() is True
        assert stats["written"] == len(accepted)
        assert stats["spooled"] == stats["dropped"] == stats["rejected"] == 0
        for metric, value, tags, ts in accepted:
            _, values, _ = store.read_arrays(metric, tags, start=ts, end=ts + 1)
            assert len(values) == 1 and (values[0] == value or np.isnan(value))
