"""``tablewatch push METRIC VALUE``: one point from a shell script, written
straight to a store or sent to a ``tablewatch server``.

Exit codes: 0 written; 2 bad input (the message names the field: ``value``,
``tag``, ``step``, ``ts``, ``metric``, ``server``) or refused by the server
(400, 413); 3 unauthorized (401: a missing or wrong token); 1 the store or
server could not be reached or is unavailable (retry later).

Pushing to a server loads neither numpy nor pandas (a shell loop of ``push``
pays about 0.1 s per call).
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from urllib.parse import urlsplit, urlunsplit

from tablewatch.errors import StoreError, TablewatchError, ValidationError
from tablewatch.store.names import validate_metric, validate_tags

EXIT_OK, EXIT_UNAVAILABLE, EXIT_BAD_INPUT, EXIT_UNAUTHORIZED = 0, 1, 2, 3
TIMEOUT_S = 30.0
#: The bearer token of the ingest server (``tablewatch server`` and ``push --server``).
TOKEN_ENV = "TABLEWATCH_INGEST_TOKEN"
POINTS_PATH = "/api/v1/points"
_MAX_TS_S = 4_102_444_800  # 2100-01-01T00:00:00Z, as the store's timestamps


def build_point(
    metric: str, value: str, tags: Sequence[str] = (), step: str | None = None, ts: str | None = None
) -> dict[str, Any]:
    """The point as the ingest API's row form, checked; raises ValidationError
    naming the field."""
    metric = validate_metric(metric)
    try:
        number = float(value)
    except ValueError:
        raise ValidationError("value", value, "must be a number") from None
    if math.isinf(number):
        raise ValidationError("value", value, "must be finite")
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, tag_value = tag.partition("=")
        if not sep:
            raise ValidationError("tag", tag, "must be KEY=VALUE")
        if key in parsed:
            raise ValidationError("tag", tag, f"repeats the tag {key!r}")
        parsed[key] = tag_value
    point: dict[str, Any] = {"metric": metric, "tags": validate_tags(parsed), "value": number}
    if step is not None:
        try:
            point["step"] = int(step)
        except ValueError:
            raise ValidationError("step", step, "must be an integer >= 0") from None
        if point["step"] < 0:
            raise ValidationError("step", step, "must be an integer >= 0")
    if ts is None:
        point["ts"] = time.time()
    else:
        try:
            seconds = float(ts)
        except ValueError:  # ISO-8601: the store's parser (it loads numpy)
            from tablewatch.store.timestamps import US_PER_S, to_us

            point["ts"] = to_us(ts, "ts") / US_PER_S
        else:
            if not 0 <= seconds < _MAX_TS_S:
                raise ValidationError("ts", ts, "must be epoch seconds between 1970 and 2100 (not ms), or ISO-8601")
            point["ts"] = seconds
    return point


def server_url(server: str) -> str:
    """The points URL of a ``--server`` value: ``http://host:port``, a bare
    ``host:port`` (http assumed) or the full ``.../api/v1/points`` URL;
    ValidationError naming ``server`` otherwise."""
    text = server.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("server", server, "must be an http:// or https:// URL, e.g. http://127.0.0.1:8080")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationError("server", server, "has a bad port number") from None
    if not parts.hostname:
        raise ValidationError("server", server, "has no host name")
    if parts.query or parts.fragment:
        raise ValidationError("server", server, "must not have a query or fragment")
    path = parts.path.rstrip("/")
    if path.endswith(POINTS_PATH):
        path = path[: -len(POINTS_PATH)]
    elif path.endswith("/api/v1") or path.endswith("/api"):
        raise ValidationError("server", server, f"give the server's base URL, or the full URL ending in {POINTS_PATH}")
    return urlunsplit((parts.scheme, parts.netloc, path + POINTS_PATH, "", ""))


def push_to_store(point: dict[str, Any], store_url: str | None) -> None:
    from tablewatch.store import open_store

    with open_store(store_url) as store:
        store.write_points(point["metric"], point["tags"], point["ts"], point["value"], point.get("step"))


def push_to_server(point: dict[str, Any], server: str, token: str | None) -> tuple[int, dict[str, Any]]:
    """POST the point; (HTTP status, JSON answer). Raises OSError when the
    server cannot be reached, ValidationError for a bad ``server``."""
    url = server_url(server)
    request = urllib.request.Request(url, data=json.dumps([point]).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read())


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
        return data if isinstance(data, dict) else {"answer": data}
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")[:500]}


def main(
    metric: str,
    value: str,
    *,
    tags: Sequence[str] = (),
    step: str | None = None,
    ts: str | None = None,
    store: str | None = None,
    server: str | None = None,
    token: str | None = None,
) -> int:
    """Push one point; the exit code (messages go to stderr)."""
    try:
        point = build_point(metric, value, tags, step, ts)
        if server is not None:
            server_url(server)
        elif token:
            raise ValidationError("token", "...", "is for --server; a --store is written directly")
    except ValidationError as e:
        return _fail(EXIT_BAD_INPUT, str(e))
    if server is None:
        try:
            push_to_store(point, store)
        except StoreError as e:
            return _fail(EXIT_UNAVAILABLE, str(e))
        except TablewatchError as e:
            return _fail(EXIT_BAD_INPUT, str(e))
        return EXIT_OK
    try:
        status, answer = push_to_server(point, server, token)
    except (OSError, ValueError) as e:
        return _fail(EXIT_UNAVAILABLE, f"server {server!r} cannot be reached: {e}")
    if status == 200:
        return EXIT_OK
    if status == 401:
        return _fail(EXIT_UNAUTHORIZED, f"unauthorized (401): the server refused the token ({answer.get('error', answer)}); "
                                        f"pass --token or set ${TOKEN_ENV}")
    rejected = answer.get("rejected") or []
    if rejected:
        return _fail(EXIT_BAD_INPUT, "; ".join(f"{r.get('field')}: {r.get('error')}" for r in rejected))
    message = f"server answered {status}: {answer.get('error', answer)}"
    return _fail(EXIT_UNAVAILABLE if status >= 500 else EXIT_BAD_INPUT, message)


def _fail(code: int, message: str) -> int:
    print(f"tablewatch push: error: {message}", file=sys.stderr)
    return code
