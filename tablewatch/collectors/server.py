"""The HTTP ingest API: ``tablewatch server``.

For anything that cannot run the Python SDK (shell scripts, other languages,
a training job in a container that only has curl). Endpoints::

    POST /api/v1/points        points, row form or columnar form (JSON array, one object, or NDJSON)
    POST /api/v1/tasks         task runs (TaskRun fields; times as epoch seconds or ISO-8601)
    POST /api/v1/predictions   {"model", "features": {...}, "prediction", "ts"}: sketched, written every few seconds
    POST /slack/actions        Slack's buttons (tablewatch.alerts.interactive)
    POST /api/v1/notify        a message to Slack through the alert outbox (same bearer token)
    GET  /healthz              liveness: the process answers
    GET  /readyz               readiness: the store answers (503 otherwise)

A point in row form is ``{"metric": "train.loss", "tags": {"run": "r1"}, "ts":
1780000000.5, "value": 0.25, "step": 100}`` (``tags``, ``step`` optional;
``ts`` is epoch seconds or ISO-8601, and defaults to the time the server
received it — give it explicitly so that a retried request stays idempotent).
The columnar form carries many points of one series: ``{"metric": ..., "tags":
..., "ts": [...], "values": [...], "steps": [...]}``. A body is a JSON array of
items, a single item, or NDJSON (one item per line; ``Content-Type:
application/x-ndjson``).

Answers are JSON. Each item is checked on its own: the valid items of a
request are written even when others are rejected, and the answer lists every
rejected one with the field that was wrong::

    200 {"accepted": 3, "points": 3, "rejected": []}
    207 {"accepted": 2, "points": 2, "rejected": [{"index": 1, "field": "value", "error": "must be a number (got 'x')"}]}
    400 the same when no item was accepted, or {"error": ..., "field": "body"} for a body that is not JSON
    401 a bearer token is configured and the request lacks it
    413 the body is over ``max_body_bytes`` or holds more than ``max_items`` points/items
    503 {"error": "store unavailable: ..."}: nothing is lost by retrying the same request (writes are idempotent)

The store is opened once by the entry point and handed to :func:`create_app`;
the token too (``tablewatch server`` reads ``$TABLEWATCH_INGEST_TOKEN``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import logging.config
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np

from tablewatch.extras import require

require("starlette", "server", "the ingest server (tablewatch.collectors.server)")
require("orjson", "server", "the ingest server (tablewatch.collectors.server)")
import orjson  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tablewatch.collectors import query_api
from tablewatch.collectors.predictions import PredictionSketches
from tablewatch.collectors.push import TOKEN_ENV  # noqa: F401 - re-exported: the server's token variable
from tablewatch.errors import StoreError, TablewatchError, ValidationError
from tablewatch.store.lru import LRU
from tablewatch.store.names import validate_metric, validate_tags
from tablewatch.store.tasks import validate_task_run
from tablewatch.store.timestamps import MAX_TS_US, MIN_TS_US, to_us

log = logging.getLogger("tablewatch.server")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 100_000
DEFAULT_SKETCH_FLUSH_S = 10.0
READY_TIMEOUT_S = 5.0
NDJSON_TYPES = ("ndjson", "jsonl", "json-seq", "jsonlines")
POINT_FIELDS = frozenset({"metric", "tags", "ts", "value", "step"})
COLUMN_FIELDS = frozenset({"metric", "tags", "ts", "values", "steps"})
PREDICTION_FIELDS = frozenset({"model", "features", "prediction", "ts"})
#: Pending sketch records kept while the store is down (then the oldest go).
MAX_PENDING_SKETCHES = 100_000
#: Series (as sent: metric and tags) the points handler keeps checked, least recently used forgotten.
SERIES_CACHE_ENTRIES = 262_144
US_PER_S = 1_000_000


class HTTPError(Exception):
    """A request-level refusal: answered as ``{"error": reason, "field": field}``."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.reason}
        if self.field is not None:
            body["field"] = self.field
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class ItemError(Exception):
    """One rejected item; ``field`` names what was wrong."""

    def __init__(self, field: str, error: str) -> None:
        super().__init__(error)
        self.field = field
        self.error = error

    @classmethod
    def of(cls, e: ValidationError, strip: str = "") -> ItemError:
        field = e.field[len(strip):].lstrip(".") if strip and e.field.startswith(strip) else e.field
        return cls(field or "item", str(e)[len(e.field) + 2:] if str(e).startswith(e.field + ": ") else str(e))


# -- the app ------------------------------------------------------------------------------


def create_app(
    store: Any,
    token: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    sketch_window_s: int = 3600,
    sketch_flush_s: float = DEFAULT_SKETCH_FLUSH_S,
    routes: Sequence[Route] = (),
) -> Starlette:
    """The ingest app (a Starlette ASGI app) writing to ``store``.

    ``token``: when given, every ``/api/`` request needs ``Authorization:
    Bearer <token>`` (compared in constant time); ``max_body_bytes``: larger
    bodies get 413; ``max_items``: most points (or task runs, or predictions)
    per request; predictions are sketched in windows of ``sketch_window_s``
    and written every ``sketch_flush_s`` seconds and on shutdown; ``routes``
    are mounted too (the alert routes: ``/slack/actions``, ``/api/v1/notify``).
    """
    for name, value in (("max_body_bytes", max_body_bytes), ("max_items", max_items)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, value, "must be an integer >= 1")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValidationError("token", "...", "must be a non-empty string or None")
    ingest = _Ingest(store, token, max_body_bytes, max_items,
                     PredictionSketches(window_s=sketch_window_s, emit_every_s=sketch_flush_s))

    @asynccontextmanager
    async def lifespan(app: Starlette):
        flusher = asyncio.create_task(ingest.flush_sketches_forever(sketch_flush_s))
        try:
            yield
        finally:
            flusher.cancel()
            await run_in_threadpool(ingest.flush_sketches, True)

    app = Starlette(
        routes=[
            Route("/healthz", ingest.healthz, methods=["GET"]),
            Route("/readyz", ingest.readyz, methods=["GET"]),
            Route("/api/v1/points", ingest.points, methods=["POST"]),
            Route("/api/v1/tasks", ingest.tasks, methods=["POST"]),
            Route("/api/v1/predictions", ingest.predictions, methods=["POST"]),
            *query_api.routes(store, ingest._authorize),  # reads: tablewatch's JSON and OpenTSDB's API
            *routes,
        ],
        exception_handlers={StoreError: _store_error, HTTPError: _http_error},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.ingest = ingest
    return app


async def _http_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, HTTPError)
    return e.response()


async def _store_error(request: Request, e: Exception) -> JSONResponse:
    log.warning("store error on %s: %s", request.url.path, e)
    return JSONResponse({"error": f"store unavailable: {e}", "retry": True}, status_code=503,
                        headers={"Retry-After": "5"})


class _Ingest:
    def __init__(self, store: Any, token: str | None, max_body_bytes: int, max_items: int,
                 sketches: PredictionSketches) -> None:
        self.store = store
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.max_items = max_items
        self.sketches = sketches
        self._pending_sketches: list = []
        self._series: LRU[tuple, tuple[str, dict[str, str], tuple] | ItemError] = LRU(SERIES_CACHE_ENTRIES)

    # -- probes ---------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(run_in_threadpool(self.store.backend.list_tables), READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return JSONResponse({"status": "unavailable", "reason": f"store did not answer in {READY_TIMEOUT_S:g} s"},
                                status_code=503)
        except (TablewatchError, OSError) as e:
            return JSONResponse({"status": "unavailable", "reason": str(e)}, status_code=503)
        return JSONResponse({"status": "ready", "store": self.store.url})

    # -- request plumbing -----------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise HTTPError(401, "missing bearer token (Authorization: Bearer <token>)", "authorization")
        if not hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), self.token):
            raise HTTPError(401, "invalid bearer token", "authorization")

    async def _items(self, request: Request) -> list[tuple[Any, ItemError | None]]:
        """The request's items, each with the error that made it unreadable."""
        self._authorize(request)
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise HTTPError(400, f"Content-Length is not a number: {declared!r}", "content-length") from None
            if size > self.max_body_bytes:
                raise HTTPError(413, f"body is {size} bytes, over the limit of {self.max_body_bytes}", "body")
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HTTPError(413, f"body is over the limit of {self.max_body_bytes} bytes", "body")
            parts.append(chunk)
        body = b"".join(parts)
        content_type = request.headers.get("content-type", "").lower()
        if not any(kind in content_type for kind in NDJSON_TYPES):
            try:
                data = _loads(body)
            except json.JSONDecodeError as e:
                if not (e.msg == "Extra data" and b"\n" in body.strip()):
                    raise HTTPError(400, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}", "body") from None
            except ValueError as e:  # not UTF-8
                raise HTTPError(400, f"malformed JSON: {e}", "body") from None
            except RecursionError:
                raise HTTPError(400, "malformed JSON: nested too deeply", "body") from None
            else:
                if isinstance(data, dict):
                    return [(data, None)]
                if isinstance(data, list):
                    return [(item, None) for item in data]
                raise HTTPError(400, f"body must be a JSON array or object, got {type(data).__name__}", "body")
        items: list[tuple[Any, ItemError | None]] = []
        for number, line in enumerate(body.split(b"\n"), 1):
            if line.strip():
                try:
                    items.append((_loads(line), None))
                except ValueError as e:
                    items.append((None, ItemError("body", f"line {number} is not JSON: {e}")))
                except RecursionError:
                    items.append((None, ItemError("body", f"line {number} is not JSON: nested too deeply")))
        return items

    def _check_count(self, count: int, what: str) -> None:
        if count > self.max_items:
            raise HTTPError(413, f"{count} {what} in one request, over the limit of {self.max_items}", "items")

    # -- points -----------------------------------------------------------------------

    async def points(self, request: Request) -> Response:
        items = await self._items(request)
        fast = self._fast_points(items)
        if fast is not None:
            self._check_count(len(items), "points")
            written, failed = await run_in_threadpool(self._write_points, fast, [])
            return _answer(len(items) - len({r["index"] for r in failed}), failed, points=written)
        rejected: list[dict[str, Any]] = []
        groups: dict[tuple, _Group] = {}
        local: dict[tuple, _Group] = {}  # the items' own (metric, tags, step-less) -> group
        columns: list[tuple[int, str, dict[str, str], Any, Any, Any]] = []
        now_us = int(time.time() * US_PER_S)
        count = 0
        for index, (item, error) in enumerate(items):
            try:
                if error is not None:
                    raise error
                if type(item) is not dict:
                    raise ItemError("item", f"must be a JSON object, got {type(item).__name__}")
                if "values" in item or type(item.get("ts")) is list:
                    metric, tags, _ = self._series_of(item, COLUMN_FIELDS)
                    for name in ("ts", "values"):
                        if type(item.get(name)) is not list:
                            raise ItemError(name, "must be an array (columnar form)" if name in item else "is missing")
                    steps = item.get("steps")
                    if steps is not None and type(steps) is not list:
                        raise ItemError("steps", "must be an array of integers or null")
                    count += len(item["ts"])
                    columns.append((index, metric, tags, item["ts"], item["values"], steps))
                    continue
                if not item.keys() <= POINT_FIELDS:
                    self._series_of(item, POINT_FIELDS)  # raises, naming the field
                # The common case inline: this loop runs once per point.
                step = item.get("step")
                tags = item.get("tags")
                try:
                    group = local.get((item.get("metric"), tuple(tags.items()) if type(tags) is dict else tags,
                                       step is None))
                except TypeError:
                    group = None
                if group is None:
                    metric, clean_tags, series_key = self._series_of(item, POINT_FIELDS)
                    group = groups.get((series_key, step is None))
                    if group is None:
                        group = groups[(series_key, step is None)] = _Group(metric, clean_tags, step is not None)
                    try:
                        local[(metric, tuple(tags.items()) if type(tags) is dict else tags, step is None)] = group
                    except TypeError:
                        pass
                ts = item.get("ts")
                if (type(ts) is float or type(ts) is int) and MIN_TS_S <= ts < MAX_TS_S:
                    ts_us = int(ts * US_PER_S) if type(ts) is int else round(ts * US_PER_S)
                else:
                    ts_us = _point_ts(ts, now_us)
                value = item.get("value", _MISSING)
                if type(value) is not float or value in _INFINITIES:
                    value = _point_value(value)
                if step is not None:
                    group.steps.append(_point_step(step))
                group.indexes.append(index)
                group.ts.append(ts_us)
                group.values.append(value)
                count += 1
            except ItemError as e:
                rejected.append({"index": index, "field": e.field, "error": e.error})
        self._check_count(count, "points")
        written, failed = await run_in_threadpool(self._write_points, list(groups.values()), columns)
        rejected.extend(failed)
        rejected.sort(key=lambda r: r["index"])
        accepted = len(items) - len({r["index"] for r in rejected})
        return _answer(accepted, rejected, points=written)

    def _fast_points(self, items: list[tuple[Any, ItemError | None]]) -> list[_Group] | None:
        """The groups of a batch of well-formed row-form points, checked a column
        at a time; None when any item needs the item-by-item path (an error to
        report, the columnar form, a missing ts, steps on some points only)."""
        if not items or len(items) > self.max_items:
            return None
        try:
            data = [item for item, error in items if error is None and type(item) is dict and item.keys() <= POINT_FIELDS]
            if len(data) != len(items):
                return None
            metrics = [item["metric"] for item in data]
            ts = [item["ts"] for item in data]
            values = [item["value"] for item in data]
            steps = [item.get("step") for item in data]
            raw_tags = [item.get("tags") for item in data]
        except KeyError:
            return None
        numbers = {int, float}
        if not set(map(type, ts)) <= numbers or not set(map(type, values)) <= numbers:
            return None  # booleans, strings, nulls, lists: let the item path name them
        step_types = set(map(type, steps))
        if step_types - {int} and step_types != {type(None)}:
            return None
        if not set(map(type, raw_tags)) <= {dict, type(None)}:
            return None
        try:  # an integer beyond 64 bits overflows: let the item path name it
            ts_s = np.asarray(ts, dtype=np.float64)
            value_array = np.asarray(values, dtype=np.float64)
            step_array = np.asarray(steps, dtype=np.int64) if step_types == {int} else None
        except OverflowError:
            return None
        if not ((ts_s >= MIN_TS_S) & (ts_s < MAX_TS_S)).all() or np.isinf(value_array).any():
            return None
        if step_array is not None and (step_array < 0).any():
            return None
        keys = [(m, tuple(t.items()) if t else ()) for m, t in zip(metrics, raw_tags)]
        ids: dict[tuple, int] = {}
        group_of = np.fromiter((ids.setdefault(k, len(ids)) for k in keys), dtype=np.int64, count=len(keys))
        series = []
        for (metric, tag_items), _ in sorted(ids.items(), key=lambda kv: kv[1]):
            try:
                found = self._series_of({"metric": metric, "tags": dict(tag_items)}, POINT_FIELDS)
            except ItemError:
                return None
            series.append(found)
        ts_us = np.rint(ts_s * US_PER_S).astype(np.int64)
        order = np.argsort(group_of, kind="stable")
        bounds = np.searchsorted(group_of[order], np.arange(len(series) + 1)).tolist()
        # Sorted once by series: each group's columns are slices (views), not copies.
        sorted_ts, sorted_values = ts_us[order], value_array[order]
        sorted_steps = step_array[order] if step_array is not None else None
        groups: dict[tuple, _Group] = {}
        for g, (metric, clean_tags, series_key) in enumerate(series):
            lo, hi = bounds[g], bounds[g + 1]
            picked = order[lo:hi]
            group = groups.get(series_key)
            if group is None:  # raw keys differing only in tag order are one series
                group = groups[series_key] = _Group(metric, clean_tags, step_array is not None)
                group.indexes, group.ts, group.values = picked, sorted_ts[lo:hi], sorted_values[lo:hi]
                group.steps = sorted_steps[lo:hi] if sorted_steps is not None else None
            else:
                group.indexes = np.r_[group.indexes, picked]
                group.ts, group.values = np.r_[group.ts, ts_us[picked]], np.r_[group.values, value_array[picked]]
                if step_array is not None:
                    group.steps = np.r_[group.steps, step_array[picked]]
        return list(groups.values())

    def _series_of(self, item: dict, allowed: frozenset) -> tuple[str, dict[str, str], tuple]:
        """(metric, clean tags, a key of the series) of an item, checked."""
        if not item.keys() <= allowed:
            unknown = sorted(item.keys() - allowed)[0]
            raise ItemError(unknown or '""', f"is not a field (fields: {', '.join(sorted(allowed))})")
        metric, tags = item.get("metric"), item.get("tags")
        if metric is None and "metric" not in item:
            raise ItemError("metric", "is missing")
        try:
            key = (metric, tuple(tags.items()) if type(tags) is dict else tags)
            found = self._series.get(key)
        except TypeError:  # unhashable metric or tag value: let validation name it
            key, found = None, None
        if found is None:
            try:
                clean_metric, clean_tags = validate_metric(metric), validate_tags(tags)
                found = (clean_metric, clean_tags, (clean_metric, tuple(clean_tags.items())))
            except ValidationError as e:
                found = ItemError.of(e)
            if key is not None:
                self._series.put(key, found)
        if isinstance(found, ItemError):
            raise found
        return found

    def _write_points(self, groups: list[_Group], columns: list) -> tuple[int, list[dict[str, Any]]]:
        """Write the groups and columnar items; (points written, rejected items).
        A StoreError propagates (→ 503)."""
        written, rejected = 0, []
        try:  # all series in one round trip (one transaction on SQLite)
            written += self.store.write_points_many([
                {"metric": g.metric, "tags": g.tags, "ts": np.array(g.ts, dtype=np.int64).astype("datetime64[us]"),
                 "values": np.array(g.values, dtype=np.float64), "steps": g.steps}
                for g in groups
            ])
            groups = []
        except ValidationError:
            pass  # nothing was written: write series by series to find the bad ones
        for group in groups:
            try:
                written += self.store.write_points(
                    group.metric, group.tags, np.array(group.ts, dtype=np.int64).astype("datetime64[us]"),
                    np.array(group.values, dtype=np.float64), group.steps,
                )
            except ValidationError as e:
                error = ItemError.of(e)
                rejected += [{"index": int(i), "field": error.field, "error": error.error} for i in group.indexes]
        for index, metric, tags, ts, values, steps in columns:
            try:
                written += self.store.write_points(metric, tags, ts, values, steps)
            except ValidationError as e:
                error = ItemError.of(e)
                rejected.append({"index": index, "field": error.field, "error": error.error})
        return written, rejected

    # -- task runs --------------------------------------------------------------------

    async def tasks(self, request: Request) -> Response:
        items = await self._items(request)
        self._check_count(len(items), "task runs")
        rejected, runs = [], []
        for index, (item, error) in enumerate(items):
            try:
                if error is not None:
                    raise error
                if not isinstance(item, dict):
                    raise ItemError("item", f"must be a JSON object, got {type(item).__name__}")
                try:
                    runs.append(validate_task_run(item, index))
                except ValidationError as e:
                    raise ItemError.of(e, f"runs[{index}]") from e
            except ItemError as e:
                rejected.append({"index": index, "field": e.field, "error": e.error})
        if runs:
            await run_in_threadpool(self.store.write_task_runs, runs)
        return _answer(len(runs), rejected)

    # -- predictions ------------------------------------------------------------------

    async def predictions(self, request: Request) -> Response:
        items = await self._items(request)
        self._check_count(len(items), "predictions")
        rejected, accepted = [], 0
        for index, (item, error) in enumerate(items):
            try:
                if error is not None:
                    raise error
                if not isinstance(item, dict):
                    raise ItemError("item", f"must be a JSON object, got {type(item).__name__}")
                unknown = item.keys() - PREDICTION_FIELDS
                if unknown:
                    raise ItemError(sorted(unknown)[0] or '""', f"is not a field (fields: {', '.join(sorted(PREDICTION_FIELDS))})")
                for name in ("model", "prediction"):
                    if name not in item:
                        raise ItemError(name, "is missing")
                ts_us = _point_ts(item.get("ts"), None) if item.get("ts") is not None else None
                try:
                    self.sketches.add(item["model"], item.get("features"), item["prediction"], ts_us)
                except ValidationError as e:
                    raise ItemError.of(e) from e
                accepted += 1
            except ItemError as e:
                rejected.append({"index": index, "field": e.field, "error": e.error})
        response = _answer(accepted, rejected)
        if response.status_code == 200:
            response.status_code = 202  # sketched now, written within sketch_flush_s
        return response

    def flush_sketches(self, force: bool = False) -> int:
        """Write the sketches due (all when ``force``); keep them on a store error."""
        records = self._pending_sketches + self.sketches.drain(force=force)
        self._pending_sketches = []
        if not records:
            return 0
        try:
            return self.store.write_sketches(records)
        except StoreError as e:
            log.warning("could not write %d sketch records, keeping them: %s", len(records), e)
            self._pending_sketches = records[-MAX_PENDING_SKETCHES:]
            return 0

    async def flush_sketches_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(min(every_s, 5.0) or 1.0)
            try:
                await run_in_threadpool(self.flush_sketches)
            except Exception:  # never let the flusher die
                log.exception("sketch flush failed")


# -- item checks ------------------------------------------------------------------------

_MISSING = object()
_INFINITIES = (math.inf, -math.inf)
MIN_TS_S, MAX_TS_S = MIN_TS_US // US_PER_S, MAX_TS_US // US_PER_S


class _Group:
    """Points of one series (and one step-ness) from one request."""

    __slots__ = ("metric", "tags", "indexes", "ts", "values", "steps")

    def __init__(self, metric: str, tags: dict[str, str], has_steps: bool) -> None:
        self.metric, self.tags = metric, tags
        self.indexes: list[int] = []
        self.ts: list[int] = []
        self.values: list[float] = []
        self.steps: list[int] | None = [] if has_steps else None

    def add(self, index: int, ts_us: int, value: float, step: int | None) -> None:
        self.indexes.append(index)
        self.ts.append(ts_us)
        self.values.append(value)
        if self.steps is not None:
            self.steps.append(step)


def _point_ts(ts: Any, default_us: int | None) -> int:
    if ts is None:
        if default_us is None:
            raise ItemError("ts", "is missing")
        return default_us
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if isinstance(ts, float) and not math.isfinite(ts):
            raise ItemError("ts", f"must be a finite number of epoch seconds (got {ts!r})")
        if not MIN_TS_S <= ts < MAX_TS_S:
            raise ItemError("ts", f"must be between 1970 and 2100 in epoch seconds, not ms (got {_shown(ts)})")
        return int(ts * US_PER_S) if isinstance(ts, int) else round(ts * US_PER_S)
    if isinstance(ts, str):
        try:
            return to_us(ts, "ts")
        except ValidationError as e:
            raise ItemError.of(e) from e
    raise ItemError("ts", f"must be epoch seconds or an ISO-8601 string (got {ts!r})")


def _point_value(value: Any) -> float:
    if value is _MISSING:
        raise ItemError("value", "is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise ItemError("value", f"is too large for a 64-bit float (got {_shown(value)})") from None
        if math.isinf(number):
            raise ItemError("value", f"is infinite (got {value!r})")
        return number
    raise ItemError("value", f"must be a number (got {value!r})"[:200])


def _point_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, int) and not isinstance(step, bool) and 0 <= step < 2**63:
        return step
    raise ItemError("step", f"must be an integer from 0 to 2**63 - 1 (got {_shown(step)})")


def _shown(value: Any) -> str:
    """``repr(value)``, shortened: a 400-digit number names itself by its size."""
    if isinstance(value, float) and value.is_integer() and 2**53 <= abs(value) < 1e30:
        value = int(value)  # orjson reads an integer past 64 bits as a float: show it as sent
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _loads(body: bytes) -> Any:
    """orjson (several times faster on a batch of points); the standard
    library when orjson refuses, so that errors read the same and NaN,
    Infinity and NDJSON sent as JSON keep working."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _answer(accepted: int, rejected: list[dict[str, Any]], **extra: Any) -> JSONResponse:
    status = 200 if not rejected else (207 if accepted else 400)
    return JSONResponse({"accepted": accepted, **extra, "rejected": rejected}, status_code=status)


# -- the entry point ------------------------------------------------------------------------


def serve(
    store_url: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    log_level: str = "info",
    rules: str | None = None,
    access_log: str | None = None,
) -> None:
    """Open the store, serve the ingest API and the alert routes (Slack from
    ``$SLACK_*``; ``rules``: the rules file whose actions Retrain runs) with
    uvicorn until stopped, close the store. Says which store it serves, and
    warns when no token is set. ``access_log``: None (none), ``"-"`` (stderr)
    or a file to append one line per request to (uvicorn's format: client,
    request line, status)."""
    import os

    import uvicorn

    from tablewatch.store import open_store

    try:
        from tablewatch.alerts.interactive import routes_from_env
    except ImportError as e:  # the `alerts` extra is not installed: ingest and reads only
        log.warning("tablewatch server: no Slack actions or /api/v1/notify (%s)", e)
        routes_from_env = None

    logging.config.dictConfig(_log_config(access_log))
    with open_store(store_url) as store:
        alert_routes = routes_from_env(store, os.environ, token=token, rules_path=rules) if routes_from_env else []
        app = create_app(store, token, max_body_bytes=max_body_bytes, max_items=max_items, routes=alert_routes)
        log.info("tablewatch server: serving store %s on http://%s:%d", store.url, host, port)
        if token is None:
            log.warning("tablewatch server: NO TOKEN SET: anyone who can reach %s:%d can write to %s; set $%s "
                        "to require 'Authorization: Bearer <token>'", host, port, store.url, TOKEN_ENV)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log is not None,
                    log_config=None)  # configured above


def _log_config(access_log: str | None) -> dict[str, Any]:
    """uvicorn's logging configuration, with this module's messages on stderr
    and the access log on stderr (``"-"``) or appended to a file."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tablewatch"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if access_log not in (None, "-"):
        config["formatters"]["access_file"] = {
            "()": "uvicorn.logging.AccessFormatter", "use_colors": False,
            "fmt": '%(asctime)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        }
        config["handlers"]["access"] = {"class": "logging.FileHandler", "filename": access_log,
                                        "formatter": "access_file"}
    return config


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread (port 0: a free port)
    and yield its base URL (``http://127.0.0.1:PORT``); stop it on exit. For
    tests and benchmarks."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))
    thread = threading.Thread(target=server.run, name="tablewatch-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
