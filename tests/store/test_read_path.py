"""Reading without Python: partial tags are explained, `tablewatch series`
and `tablewatch query` print what a store holds."""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest

from tablewatch import open_store
from tablewatch.cli import main
from tablewatch.errors import SeriesNotFound
from tablewatch.store.query import parse_duration, parse_time

T0 = float(int(time.time()) // 3600 * 3600 - 2 * 86400)


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/read.db"
    with open_store(url) as store:
        store.write_points("train.loss", {"model": "ranker", "run": "r1"}, T0 + np.arange(100.0),
                           np.linspace(1, 0.01, 100), steps=np.arange(100))
        store.write_points("train.loss", {"model": "ranker", "run": "r2"}, T0 + np.arange(50.0), np.ones(50))
        store.write_points("serve.latency_ms", {"route": "/predict"}, [T0, T0 + 60], [12.5, float("nan")])
    return url


def test_partial_tags_name_the_series_that_have_them(url):
    with open_store(url, create=False) as store:
        with pytest.raises(SeriesNotFound) as raised:
            store.read_points("train.loss", {"model": "ranker"})
        message = str(raised.value)
        assert "no series train.loss{model=ranker}" in message
        assert "train.loss{model=ranker, run=r1}" in message and "train.loss{model=ranker, run=r2}" in message
        assert [s.tags["run"] for s in raised.value.candidates] == ["r1", "r2"]
        # exact tags, nothing in the range: an empty frame, no error; an unknown series too
        assert len(store.read_points("train.loss", {"model": "ranker", "run": "r1"}, start=T0 + 1000)) == 0
        assert len(store.read_points("train.loss", {"model": "other"})) == 0


def test_series_lists_tags_counts_and_last_points(url, capsys):
    assert main(["series", "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["metric", "tags", "points", "last", "point", "(UTC)", "last", "value"]
    assert lines[1].split()[:3] == ["serve.latency_ms", "route=/predict", "2"]
    assert lines[2].split()[:3] == ["train.loss", "model=ranker,run=r1", "100"] and lines[2].split()[-1] == "0.01"
    assert main(["series", "train.loss", "--tag", "run=r2", "--json", "--store", url]) == 0
    [only] = json.loads(capsys.readouterr().out)
    assert only == {"metric": "train.loss", "tags": {"model": "ranker", "run": "r2"}, "points": 50,
                    "first_ts": T0, "last_ts": T0 + 49, "last_value": 1.0}
    assert main(["series", "nothing.here", "--store", url]) == 1
    assert "no series of metric nothing.here" in capsys.readouterr().err


def test_query_prints_table_csv_and_json(url, capsys):
    base = ["query", "train.loss", "--tag", "model=ranker", "--tag", "run=r1", "--store", url]
    assert main([*base, "--format", "csv", "--start", str(int(T0) + 10), "--end", str(int(T0) + 13)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["ts", "value", "step"] and [r[2] for r in rows[1:]] == ["10", "11", "12"]
    assert rows[1][0].endswith("Z") and float(rows[1][1]) == pytest.approx(np.linspace(1, 0.01, 100)[10])
    assert main([*base, "--format", "json", "--max-points", "10"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["metric"] == "train.loss" and payload["count"] <= 10
    assert payload["points"][0] == {"ts": T0, "value": 1.0, "step": 0}
    assert main([*base, "--start", "3d-ago"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 101 and "100 points" in captured.err
    assert main(["query", "serve.latency_ms", "--tag", "route=/predict", "--format", "json", "--store", url]) == 0
    assert [p["value"] for p in json.loads(capsys.readouterr().out)["points"]] == [12.5, None]  # NaN is null
    assert main(["query", "train.loss", "--tag", "model=ranker", "--store", url]) == 2
    assert "run=r1" in capsys.readouterr().err
    assert main([*base, "--start", "yesterday"]) == 2
    assert "--start: must be a time" in capsys.readouterr().err


def test_times_and_durations_as_opentsdb_writes_them():
    now = 1_800_000_000.0
    assert parse_time("1h-ago", "start", now) == now - 3600
    assert parse_time("now", "end", now) == now
    assert parse_time("1800000000", "start") == 1_800_000_000
    assert parse_time("1800000000123", "start") == 1_800_000_000.123
    assert parse_time(1_800_000_000_123, "start") == 1_800_000_000.123  # Grafana sends ms numbers
    assert parse_time("2027/01/15-08:00:00", "start") == parse_time("2027-01-15T08:00:00Z", "start")
    assert parse_duration("500ms") == 0.5 and parse_duration("2w") == 14 * 86400
