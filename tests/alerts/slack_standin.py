"""A local stand-in for Slack's Web API, incoming webhooks and response URLs.

A real HTTP server on loopback that the real slack_sdk clients talk to. It
records every payload it accepts, and can be told to answer the next requests
with 429 (and ``Retry-After``) or 500, or to be down (the connection is refused:
the listening socket is closed).

    /api/chat.postMessage   /api/chat.update   (Web API, bearer token)
    /hooks/<any>                               (incoming webhook)
    /response/<any>                            (a click's response_url)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlackStandIn:
    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.requests: list[dict[str, Any]] = []  # every accepted call, in order
        self.refused: list[dict[str, Any]] = []  # answered 429/500
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # -- control ----------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                standin._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_next(self, count: int, status: int = 500, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures += [(status, headers)] * count

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/XXXX"

    def response_url(self, name: str = "r1") -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if method is None or r["method"] == method]

    def wait_for(self, count: int, method: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.calls(method)

    # -- the server side ------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        path = urllib.parse.urlparse(handler.path).path
        if handler.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, headers = failure
            with self._lock:
                self.refused.append({"path": path, "status": status, "at": time.time()})
            self._answer(handler, status, {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"},
                         headers)
            return
        if path.startswith("/api/"):
            method = path[len("/api/"):]
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                self._answer(handler, 200, {"ok": False, "error": "invalid_auth"})
                return
            if method not in ("chat.postMessage", "chat.update"):
                self._answer(handler, 200, {"ok": False, "error": "unknown_method"})
                return
            channel = body.get("channel")
            ts = body.get("ts") if method == "chat.update" else f"1800000000.{next(self._ts):06d}"
            with self._lock:
                self.requests.append({"method": method, "at": time.time(), "ts": ts, **body})
            self._answer(handler, 200, {"ok": True, "channel": channel, "ts": ts,
                                        "message": {"text": body.get("text")}})
        elif path.startswith("/hooks/") or path.startswith("/response/"):
            method = "webhook" if path.startswith("/hooks/") else "response_url"
            with self._lock:
                self.requests.append({"method": method, "path": path, "at": time.time(), **body})
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        else:
            self._answer(handler, 404, {"ok": False, "error": "not_found"})

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
