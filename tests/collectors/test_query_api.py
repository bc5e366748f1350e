"""The read routes of `tablewatch server`, over real HTTP: tablewatch's JSON
(/api/v1/series, /api/v1/query) and OpenTSDB's /api/query, /api/suggest,
/api/aggregators, /api/config/filters and /api/search/lookup, checked against
OpenTSDB 2.x's documented requests and answers and what Grafana's OpenTSDB
data source sends (a POST body with ms timestamps, msResolution, showQuery)."""

from __future__ import annotations

import time

import httpx
import pytest

from tablewatch import open_store
from tablewatch.collectors.server import create_app, serve_in_thread

TOKEN = "read-token"
B = int(time.time()) // 3600 * 3600 - 2 * 3600  # a whole hour, 2 to 3 hours ago: inside "4h-ago" for an hour
METRIC = "sys.cpu.user"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("read") / "tw.db"
    with open_store(f"sqlite:///{path}") as store:
        store.write_points(METRIC, {"host": "web01", "dc": "lga"}, [B, B + 20], [10.0, 30.0])
        store.write_points(METRIC, {"host": "web02", "dc": "lga"}, [B + 10], [5.0])
        store.write_points(METRIC, {"host": "web03", "dc": "ewr"}, [B, B + 10, B + 20], [100.0, 100.0, 100.0])
        store.write_points("sys.mem", {"host": "web01"}, [B], [1.0])
        with serve_in_thread(create_app(store, TOKEN)) as url:
            yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield client


def grafana_body(query: dict, **extra) -> dict:
    """What Grafana's OpenTSDB data source POSTs: ms timestamps, msResolution, globalAnnotations."""
    return {"start": B * 1000, "end": (B + 20) * 1000, "queries": [query], "msResolution": False,
            "globalAnnotations": True, **extra}


@pytest.mark.parametrize("path", ["/api/query?start=1h-ago&m=sum:sys.cpu.user", "/api/suggest?type=metrics",
                                  "/api/v1/series", "/api/v1/query?metric=sys.mem&tag=host=web01"])
def test_reads_need_the_same_token_as_ingest(server, path):
    assert httpx.get(server + path).status_code == 401
    assert httpx.get(server + path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_sum_interpolates_and_tags_and_aggregate_tags_are_reported(client):
    answer = client.post("/api/query", json=grafana_body(
        {"metric": METRIC, "aggregator": "sum", "tags": {"dc": "lga"}}))
    assert answer.status_code == 200
    [result] = answer.json()
    assert result["metric"] == METRIC
    assert result["tags"] == {"dc": "lga"} and result["aggregateTags"] == ["host"]
    # web02 has no point at B and B+20 (outside its span: left out); web01 has none at
    # B+10 and is interpolated linearly there: 20 + 5.
    assert result["dps"] == {str(B): 10.0, str(B + 10): 25.0, str(B + 20): 30.0}


@pytest.mark.parametrize("aggregator, expected", [
    ("zimsum", [10.0, 5.0, 30.0]), ("max", [10.0, 20.0, 30.0]), ("mimmax", [10.0, 5.0, 30.0]),
    ("min", [10.0, 5.0, 30.0]), ("avg", [10.0, 12.5, 30.0]), ("count", [1.0, 1.0, 1.0]),
])
def test_aggregators(client, aggregator, expected):
    answer = client.post("/api/query", json=grafana_body({"metric": METRIC, "aggregator": aggregator,
                                                          "tags": {"dc": "lga"}}))
    [result] = answer.json()
    assert list(result["dps"].values()) == expected


def test_grouping_by_star_and_pipe_and_filters(client):
    grouped = client.post("/api/query", json=grafana_body(
        {"metric": METRIC, "aggregator": "sum", "tags": {"host": "*"}}, showQuery=True)).json()
    assert [r["tags"] for r in grouped] == [{"dc": "lga", "host": "web01"}, {"dc": "lga", "host": "web02"},
                                            {"dc": "ewr", "host": "web03"}]
    assert all(r["aggregateTags"] == [] and r["query"]["index"] == 0 for r in grouped)
    assert grouped[1]["dps"] == {str(B + 10): 5.0}

    piped = client.get("/api/query", params={"start": str(B), "end": str(B + 20), "arrays": "",
                                             "m": "sum:sys.cpu.user{host=web01|web03}"}).json()
    assert [r["tags"]["host"] for r in piped] == ["web01", "web03"]
    assert piped[0]["dps"] == [[B, 10.0], [B + 20, 30.0]]

    # OpenTSDB 2.2 filters: groupBy false filters without grouping
    filtered = client.post("/api/query", json=grafana_body({"metric": METRIC, "aggregator": "max", "filters": [
        {"type": "wildcard", "tagk": "host", "filter": "web0*", "groupBy": False},
        {"type": "regexp", "tagk": "dc", "filter": "^l", "groupBy": False}]})).json()
    assert len(filtered) == 1 and filtered[0]["aggregateTags"] == ["host"]
    second_braces = client.get("/api/query", params={"start": str(B), "end": str(B + 20),
                                                     "m": "sum:sys.cpu.user{}{dc=literal_or(ewr)}"}).json()
    assert [r["dps"] for r in second_braces] == [{str(B): 100.0, str(B + 10): 100.0, str(B + 20): 100.0}]


def test_explicit_tags_and_rate(client):
    explicit = client.post("/api/query", json=grafana_body(
        {"metric": "sys.mem", "aggregator": "sum", "tags": {"host": "*"}, "explicitTags": True})).json()
    assert [r["tags"] for r in explicit] == [{"host": "web01"}]
    none = client.post("/api/query", json=grafana_body(
        {"metric": METRIC, "aggregator": "sum", "tags": {"host": "*"}, "explicitTags": True})).json()
    assert none == []  # every series of METRIC also has a dc tag
    [rate] = client.get("/api/query", params={"start": str(B), "end": str(B + 20),
                                              "m": "sum:rate:sys.cpu.user{host=web01}"}).json()
    assert rate["dps"] == {str(B + 20): 1.0}  # (30 - 10) / 20 s


def test_downsampling_relative_times_and_ms_resolution(client):
    body = {"start": "4h-ago", "queries": [{"metric": METRIC, "aggregator": "sum", "downsample": "1m-avg",
                                           "tags": {"host": "web01"}}], "msResolution": True}
    [result] = client.post("/api/query", json=body).json()
    assert result["dps"] == {str(B * 1000): 20.0}  # avg of 10 and 30 in the minute starting at B
    filled = client.get("/api/query", params={"start": str(B), "end": str(B + 180),
                                              "m": "sum:1m-max-zero:sys.cpu.user{host=web01}"}).json()
    assert filled[0]["dps"] == {str(B): 30.0, str(B + 60): 0.0, str(B + 120): 0.0, str(B + 180): 0.0}


def test_errors_are_opentsdb_errors(client):
    unknown = client.get("/api/query", params={"start": "1h-ago", "m": "sum:no.such.metric"})
    assert unknown.status_code == 400
    assert "No such name for 'metrics': 'no.such.metric'" in unknown.json()["error"]["message"]
    for params in ({"m": "sum:sys.cpu.user"}, {"start": "1h-ago"}, {"start": "1h-ago", "m": "nope:sys.cpu.user"},
                   {"start": "1h-ago", "m": "sum:1x-avg:sys.cpu.user"}, {"start": "soon", "m": "sum:sys.cpu.user"}):
        answer = client.get("/api/query", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == 400, params


def test_suggest_aggregators_filters_and_lookup(client):
    assert client.get("/api/suggest", params={"type": "metrics", "q": "sys.c", "max": 1000}).json() == [METRIC]
    assert client.get("/api/suggest", params={"type": "metrics", "q": "cpu", "max": 1000}).json() == []  # Grafana's test
    assert client.get("/api/suggest", params={"type": "tagk"}).json() == ["dc", "host"]
    assert client.get("/api/suggest", params={"type": "tagv", "q": "web", "max": 2}).json() == ["web01", "web02"]
    assert client.post("/api/suggest", json={"type": "tagv", "q": "e"}).json() == ["ewr"]
    assert client.get("/api/suggest", params={"q": "x"}).status_code == 400
    assert {"sum", "avg", "min", "max", "count"} <= set(client.get("/api/aggregators").json())
    assert {"wildcard", "literal_or", "regexp"} <= set(client.get("/api/config/filters").json())
    lookup = client.get("/api/search/lookup", params={"m": "sys.cpu.user{host=*}", "limit": 1000}).json()
    assert lookup["totalResults"] == 3 and {r["tags"]["host"] for r in lookup["results"]} == {"web01", "web02", "web03"}


def test_v1_series_and_query(client):
    series = client.get("/api/v1/series", params={"metric": METRIC, "tag": "dc=lga"}).json()["series"]
    assert [(s["tags"]["host"], s["points"], s["last_value"]) for s in series] == [("web01", 2, 30.0), ("web02", 1, 5.0)]
    points = client.get("/api/v1/query", params={"metric": METRIC, "tag": ["host=web01", "dc=lga"],
                                                 "start": str(B + 1)}).json()
    assert points == {"metric": METRIC, "tags": {"host": "web01", "dc": "lga"}, "count": 1,
                      "points": [{"ts": float(B + 20), "value": 30.0, "step": None}]}
    partial = client.get("/api/v1/query", params={"metric": METRIC, "tag": "dc=lga"})
    assert partial.status_code == 404 and len(partial.json()["candidates"]) == 2
    assert client.get("/api/v1/query", params={"tag": "dc=lga"}).json()["field"] == "metric"
