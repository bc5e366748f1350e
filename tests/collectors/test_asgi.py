"""TablewatchMiddleware on a FastAPI app served by a real uvicorn, with real
HTTP requests, recording through a real Collector into a real store."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from tablewatch.collectors import Collector
from tablewatch.collectors.asgi import LATENCY_METRIC, TablewatchMiddleware
from tablewatch.collectors.server import serve_in_thread
from tablewatch.errors import ValidationError
from tablewatch.store import open_store

STREAM_PAUSE_S = 0.05


def build_app(collector: Collector) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.post("/predict")
    async def predict(payload: dict) -> dict:
        return {"score": 0.5}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("model file missing")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            for i in range(4):
                await asyncio.sleep(STREAM_PAUSE_S)
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/stream-broken")
    async def stream_broken() -> StreamingResponse:
        async def chunks():
            yield b"first\n"
            raise RuntimeError("generator died")

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    async def thing(request):
        return PlainTextResponse(request.path_params["name"])

    app.mount("/legacy", Starlette(routes=[Route("/things/{name}", thing)]))
    app.add_middleware(TablewatchMiddleware, collector=collector, service="ranker")
    return app


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Send the requests once; yield {(route, method, status): latencies}."""
    path = tmp_path_factory.mktemp("asgi") / "serve.db"
    with open_store(f"sqlite:///{path}") as store:
        with Collector(store, flush_interval=60, spool_dir=path.parent / "spool") as collector:
            with serve_in_thread(build_app(collector)) as url:
                with httpx.Client(base_url=url, timeout=30) as client:
                    for i in range(20):
                        assert client.get(f"/items/{i}").status_code == 200
                    assert client.get("/items/not-a-number").status_code == 422
                    assert client.post("/predict", json={"x": 1}).status_code == 200
                    assert httpx.get(url + "/boom").status_code == 500  # uvicorn then drops that connection
                    streamed = client.get("/stream")
                    assert streamed.status_code == 200 and streamed.text.count("chunk") == 4
                    with pytest.raises(httpx.RemoteProtocolError):  # 200 sent, then the body broke
                        httpx.get(url + "/stream-broken")
                    assert client.get("/legacy/things/a").text == "a"
                    assert client.get("/legacy/things/b").text == "b"
                    for i in range(3):
                        assert client.get(f"/random/{i}").status_code == 404
                    assert client.get("/healthz").status_code == 200
                    with client.stream("GET", "/stream") as partial:  # a client leaving mid-stream
                        next(partial.iter_bytes())
            collector.flush()
        found = {}
        for series in store.find_series(LATENCY_METRIC):
            assert series.tags["service"] == "ranker"
            key = (series.tags["route"], series.tags["method"], series.tags["status"])
            found[key] = store.read_points(LATENCY_METRIC, series.tags)["value"].tolist()
        yield found


def test_routes_are_recorded_by_template_not_raw_path(recorded):
    assert len(recorded[("/items/{item_id}", "GET", "2xx")]) == 20
    assert len(recorded[("/items/{item_id}", "GET", "4xx")]) == 1
    assert len(recorded[("/predict", "POST", "2xx")]) == 1
    assert len(recorded[("/legacy/things/{name}", "GET", "2xx")]) == 2
    assert len(recorded[("__unmatched__", "GET", "4xx")]) == 3
    assert not any("/items/1" in route or "/random" in route for route, _, _ in recorded)


def test_exceptions_count_as_5xx(recorded):
    assert len(recorded[("/boom", "GET", "5xx")]) == 1
    assert len(recorded[("/stream-broken", "GET", "5xx")]) == 1  # even after a 200 was sent
    assert ("/stream-broken", "GET", "2xx") not in recorded


def test_streaming_latency_covers_the_whole_body(recorded):
    latencies = recorded[("/stream", "GET", "2xx")]
    assert len(latencies) >= 1
    assert max(latencies) >= 4 * STREAM_PAUSE_S * 0.9
    assert all(0 < v < 5 for values in recorded.values() for v in values)


def test_health_probes_are_not_recorded(recorded):
    assert not any(route == "/healthz" for route, _, _ in recorded)


def test_middleware_checks_its_arguments():
    with pytest.raises(ValidationError, match="collector"):
        TablewatchMiddleware(FastAPI(), object(), service="x")
    with pytest.raises(ValidationError, match="service"):
        TablewatchMiddleware(FastAPI(), Collector.__new__(Collector), service="")


def test_starlette_routes_and_mounts(tmp_path):
    """Plain Starlette, middleware wrapping the app from outside."""

    class Recorder:
        def __init__(self) -> None:
            self.tags: list[dict] = []

        def log(self, metric, value, *, tags=None, **kwargs):
            self.tags.append(tags)

    async def user(request):
        return PlainTextResponse("u")

    recorder = Recorder()
    inner = Starlette(routes=[Route("/users/{uid:int}", user), Mount("/v2", routes=[Route("/users/{uid}", user)])])
    with serve_in_thread(TablewatchMiddleware(inner, recorder, service="api")) as url:
        assert httpx.get(url + "/users/7").status_code == 200
        assert httpx.get(url + "/v2/users/8").status_code == 200
        assert httpx.delete(url + "/users/7").status_code == 405
    routes = [(t["route"], t["method"], t["status"]) for t in recorder.tags]
    assert routes == [("/users/{uid}", "GET", "2xx"), ("/v2/users/{uid}", "GET", "2xx"),
                      ("/users/{uid}", "DELETE", "4xx")]
