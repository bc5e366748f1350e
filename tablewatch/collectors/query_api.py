"""The read routes of ``tablewatch server``: tablewatch's own JSON API and the
part of OpenTSDB's HTTP API that Grafana's built-in OpenTSDB data source uses.

- ``GET /api/v1/series?metric=&tag=k=v&limit=``: series with point counts and last points.
- ``GET /api/v1/query?metric=&tag=k=v&start=&end=&max_points=``: points of one series.
- ``GET|POST /api/query``, ``GET|POST /api/suggest``, ``GET /api/aggregators``,
  ``GET /api/config/filters``, ``GET /api/search/lookup``: as OpenTSDB 2.x answers them.

Every route needs the same bearer token as ingest (when one is set). Times
take the forms of :func:`tablewatch.store.query.parse_time`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tablewatch.errors import SeriesNotFound, ValidationError
from tablewatch.store import query as q

DEFAULT_SERIES_LIMIT = 1000
MAX_QUERY_BODY_BYTES = 1024 * 1024


def routes(store: Any, authorize: Callable[[Request], None]) -> list[Route]:
    """The read routes over ``store``; ``authorize(request)`` raises on a bad token."""
    api = _ReadAPI(store, authorize)
    return [
        Route("/api/v1/series", api.series, methods=["GET"]),
        Route("/api/v1/query", api.query_v1, methods=["GET"]),
        Route("/api/query", api.opentsdb_query, methods=["GET", "POST"]),
        Route("/api/suggest", api.suggest, methods=["GET", "POST"]),
        Route("/api/aggregators", api.aggregators, methods=["GET"]),
        Route("/api/config/filters", api.filters, methods=["GET"]),
        Route("/api/search/lookup", api.lookup, methods=["GET"]),
    ]


def _tsdb_error(status: int, message: str) -> JSONResponse:
    """An error as OpenTSDB writes it (Grafana shows ``error.message``)."""
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def _v1_error(e: ValidationError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(e), "field": e.field}, status_code=status)


class _ReadAPI:
    def __init__(self, store: Any, authorize: Callable[[Request], None]) -> None:
        self.store = store
        self.authorize = authorize

    # -- tablewatch's own ---------------------------------------------------------------

    async def series(self, request: Request) -> Response:
        self.authorize(request)
        params = request.query_params
        try:
            tags = q.parse_tags(params.getlist("tag"))
            limit = _int(params.get("limit"), "limit", DEFAULT_SERIES_LIMIT)
            summaries = await run_in_threadpool(q.summarize_series, self.store, params.get("metric") or None,
                                                tags, limit)
        except ValidationError as e:
            return _v1_error(e)
        return JSONResponse({"series": [s.to_dict() for s in summaries]})

    async def query_v1(self, request: Request) -> Response:
        self.authorize(request)
        params = request.query_params
        try:
            metric = params.get("metric")
            if not metric:
                raise q.QueryError("metric", metric, "is required")
            tags = q.parse_tags(params.getlist("tag"))
            start = q.parse_time(params["start"], "start") if params.get("start") else None
            end = q.parse_time(params["end"], "end") if params.get("end") else None
            max_points = _int(params.get("max_points"), "max_points", None)
            frame = await run_in_threadpool(self.store.read_points, metric, tags, start, end, max_points)
        except SeriesNotFound as e:
            return JSONResponse({"error": str(e), "candidates": [{"metric": s.metric, "tags": s.tags}
                                                                 for s in e.candidates]}, status_code=404)
        except ValidationError as e:
            return _v1_error(e)
        return JSONResponse(q.points_payload(metric, tags, frame))

    # -- OpenTSDB ---------------------------------------------------------------------------

    async def opentsdb_query(self, request: Request) -> Response:
        self.authorize(request)
        try:
            if request.method == "POST":
                body = await _json_body(request)
                if not isinstance(body, dict):
                    raise q.QueryError("body", body, "must be a JSON object with start and queries")
                raw_queries = body.get("queries")
                if not isinstance(raw_queries, list) or not raw_queries:
                    raise q.QueryError("queries", raw_queries, "Missing sub queries")
                queries = [q.sub_query_from_json(item, i) for i, item in enumerate(raw_queries)]
                start, end = body.get("start"), body.get("end")
                options = {"ms_resolution": q._truthy(body.get("msResolution", False)) or q._truthy(body.get("ms", False)),
                           "show_query": q._truthy(body.get("showQuery", False)), "arrays": False}
            else:
                params = request.query_params
                queries = [q.parse_m(m, i) for i, m in enumerate(params.getlist("m"))]
                if not queries:
                    raise q.QueryError("m", None, "Missing sub queries")
                start, end = params.get("start"), params.get("end")
                options = {"ms_resolution": "ms" in params, "show_query": "show_query" in params,
                           "arrays": "arrays" in params}
            if start is None or start == "":
                raise q.QueryError("start", start, "Missing start time")
            start_s = q.parse_time(start, "start")
            end_s = q.parse_time(end, "end") if end not in (None, "") else None
            results = await run_in_threadpool(q.run_query, self.store, queries, start_s, end_s, **options)
        except ValidationError as e:
            return _tsdb_error(400, str(e))
        return JSONResponse(results)

    async def suggest(self, request: Request) -> Response:
        self.authorize(request)
        try:
            if request.method == "POST":
                body = await _json_body(request)
                params = body if isinstance(body, dict) else {}
            else:
                params = dict(request.query_params)
            kind = params.get("type")
            if not kind:
                raise q.QueryError("type", kind, "Missing 'type' parameter")
            limit = _int(params.get("max"), "max", 25)
            found = await run_in_threadpool(q.suggest, self.store, kind, str(params.get("q") or ""), limit)
        except ValidationError as e:
            return _tsdb_error(400, str(e))
        return JSONResponse(found)

    async def aggregators(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse(sorted(q.AGGREGATORS))

    async def filters(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse({name: {"description": text, "examples": ""} for name, text in q.FILTER_TYPES.items()})

    async def lookup(self, request: Request) -> Response:
        self.authorize(request)
        try:
            m = request.query_params.get("m")
            if not m:
                raise q.QueryError("m", m, "Missing metric and tags, e.g. m=metric{tag=*}")
            limit = _int(request.query_params.get("limit"), "limit", 25)
            found = await run_in_threadpool(q.lookup, self.store, m, limit)
        except ValidationError as e:
            return _tsdb_error(400, str(e))
        return JSONResponse(found)


def _int(text: Any, field: str, default: int | None) -> int | None:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise q.QueryError(field, text, "must be a whole number >= 1") from None
    if value < 1:
        raise q.QueryError(field, text, "must be a whole number >= 1")
    return value


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_QUERY_BODY_BYTES:
        raise q.QueryError("body", f"{len(body)} bytes", f"is over {MAX_QUERY_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise q.QueryError("body", body[:60], "is not JSON") from e
