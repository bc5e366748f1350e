"""Serving health from any ASGI app (Starlette, FastAPI, ...): latency,
status and throughput per route.

::

    app = FastAPI()
    app.add_middleware(TablewatchMiddleware, collector=collector, service="ranker")
    # or: app = TablewatchMiddleware(app, collector, service="ranker")

Every HTTP request becomes one point of ``serve.latency_s`` (seconds from the
request reaching the middleware until the app returned, i.e. after the last
body chunk of a streaming response) with the tags:

- ``service``: given;
- ``route``: the route *template* the router matched (``/items/{item_id}``),
  never the raw path, so the number of series stays bounded;
  ``"__unmatched__"`` when no route matched (404s of random paths);
- ``method``: GET, POST, ... (anything unusual is ``OTHER``);
- ``status``: the status class, ``2xx`` ... ``5xx``; a request whose app
  raised counts as ``5xx`` (that is what the client got, or a broken stream),
  one that ended without any response (client gone) as ``none``.

Throughput is the number of points per time bucket, and the error rate the
share of ``5xx``: ``store.aggregate("serve.latency_s", tags, every=60)`` gives
count, mean and p50/p95/p99 per minute for one (service, route, method, status)
series. Exceptions are re-raised untouched. Lifespan and websocket scopes pass
through. The middleware only calls ``collector.log()``: it never waits for the
store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tablewatch.errors import ValidationError
from tablewatch.store.names import validate_tags

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

LATENCY_METRIC = "serve.latency_s"
UNMATCHED = "__unmatched__"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class TablewatchMiddleware:
    """Pure ASGI middleware recording ``serve.latency_s`` per request.

    ``collector``: anything with ``log(metric, value, *, tags=..., ts=...)``
    (a :class:`~tablewatch.Collector`); ``service``: the service tag;
    ``exclude``: paths not recorded (health probes); ``metric``: the metric name.
    """

    def __init__(
        self,
        app: ASGIApp,
        collector: Any,
        service: str,
        *,
        exclude: tuple[str, ...] = ("/healthz", "/readyz", "/livez", "/metrics"),
        metric: str = LATENCY_METRIC,
    ) -> None:
        if not hasattr(collector, "log"):
            raise ValidationError("collector", collector, "must have a log(metric, value, tags=...) method")
        validate_tags({"service": service})
        self.app = app
        self.collector = collector
        self.service = service
        self.exclude = frozenset(exclude)
        self.metric = metric

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            failed = True
            raise
        finally:
            self._record(scope, time.perf_counter() - start, status, failed)

    def _record(self, scope: Scope, latency: float, status: int | None, failed: bool) -> None:
        if failed:
            status_class = "5xx"
        elif status is None:
            status_class = "none"
        else:
            status_class = _STATUS_CLASSES.get(status // 100, "other")
        method = scope.get("method", "OTHER")
        tags = {
            "service": self.service,
            "route": route_template(scope),
            "method": method if method in METHODS else "OTHER",
            "status": status_class,
        }
        try:
            self.collector.log(self.metric, latency, tags=tags)
        except Exception:  # recording must never break serving
            pass


def route_template(scope: Scope) -> str:
    """The template of the route the app's router matched (``/items/{id}``),
    prefixed by the mount path for mounted sub-apps; ``"__unmatched__"``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED
    if _is_mount(route):  # matched a mounted app that has no router of its own
        return route.path_format if isinstance(getattr(route, "path_format", None), str) else template
    # Inside a mount, root_path grew by the mount prefix the request matched.
    prefix = scope.get("root_path", "")[len(scope.get("app_root_path", "")):]
    return (prefix + template) if prefix and not template.startswith(prefix) else template


def _is_mount(route: Any) -> bool:
    return type(route).__name__ in ("Mount", "Host") and hasattr(route, "app")
