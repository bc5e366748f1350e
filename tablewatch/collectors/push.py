"""``tablewatch push METRIC VALUE``: one point from a shell script, written
straight to a store or sent to a ``tablewatch server``.

Exit codes: 0 written; 2 bad input (the message names the field: ``value``,
``tag``, ``step``, ``ts``, ``metric``) or refused by the server (401, 413);
1 the store or server could not be reached or is unavailable (retry later).
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

from tablewatch.errors import StoreError, TablewatchError, ValidationError
from tablewatch.store.names import validate_metric, validate_tags
from tablewatch.store.timestamps import US_PER_S, to_us

EXIT_OK, EXIT_UNAVAILABLE, EXIT_BAD_INPUT = 0, 1, 2
TIMEOUT_S = 30.0


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
            seconds: float | str = float(ts)
        except ValueError:
            seconds = ts  # ISO-8601
        point["ts"] = to_us(seconds, "ts") / US_PER_S
    return point


def push_to_store(point: dict[str, Any], store_url: str | None) -> None:
    from tablewatch.store import open_store

    with open_store(store_url) as store:
        store.write_points(point["metric"], point["tags"], point["ts"], point["value"], point.get("step"))


def push_to_server(point: dict[str, Any], server: str, token: str | None) -> tuple[int, dict[str, Any]]:
    """POST the point; (HTTP status, JSON answer). Raises OSError when the
    server cannot be reached."""
    url = server.rstrip("/") + "/api/v1/points"
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
    rejected = answer.get("rejected") or []
    if rejected:
        return _fail(EXIT_BAD_INPUT, "; ".join(f"{r.get('field')}: {r.get('error')}" for r in rejected))
    message = f"server answered {status}: {answer.get('error', answer)}"
    return _fail(EXIT_UNAVAILABLE if status >= 500 else EXIT_BAD_INPUT, message)


def _fail(code: int, message: str) -> int:
    print(f"tablewatch push: error: {message}", file=sys.stderr)
    return code
