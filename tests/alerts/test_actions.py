"""Retrain actions: a shell command, an HTTP webhook, a Celery task by name
(a real worker on an in-memory broker)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from tablewatch.alerts.actions import run_action
from tablewatch.alerts.rules import parse_rules
from tablewatch.errors import ValidationError

CONTEXT = {"rule": "etl-slow", "incident_id": "abc-1", "labels": {"task": "extract", "model-name": "ranker"},
           "user": "U1", "action": "retrain"}


def actions(text):
    return parse_rules(f"actions:\n{text}\nrules: []\n").actions


def test_command_list_gets_the_alert_in_its_environment(tmp_path):
    out = tmp_path / "out.txt"
    spec = actions(f"""  retrain:
    kind: command
    command: ["sh", "-c", "echo $TABLEWATCH_RULE $TABLEWATCH_INCIDENT $TABLEWATCH_USER $TABLEWATCH_LABEL_TASK \\
$TABLEWATCH_LABEL_MODEL_NAME > {out}; echo started"]""")["retrain"]
    result = run_action(spec, CONTEXT)
    assert result.ok and result.detail == "command exited 0: started"
    assert out.read_text().strip() == "etl-slow abc-1 U1 extract ranker"


def test_command_string_failure_and_timeout():
    failed = run_action({"kind": "command", "command": "echo boom >&2; exit 3"}, CONTEXT)
    assert not failed.ok and failed.detail == "command exited 3: boom"
    slow = run_action({"kind": "command", "command": ["sleep", "5"], "timeout": 0.2}, CONTEXT)
    assert not slow.ok and "timed out after 0.2 s" in slow.detail
    missing = run_action({"kind": "command", "command": ["/no/such/program"]}, CONTEXT)
    assert not missing.ok and "could not start" in missing.detail
    with pytest.raises(ValidationError, match="kind"):
        run_action({"kind": "carrier-pigeon"}, CONTEXT)


@pytest.fixture
def receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": json.loads(body)})
            status = 500 if self.path == "/broken" else 202
            self.send_response(status)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"queued!")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_webhook_posts_the_alert(receiver):
    url, received = receiver
    spec = actions(f"""  retrain:
    kind: webhook
    url: {url}/retrain
    headers: {{Authorization: Bearer ci-token}}""")["retrain"]
    result = run_action(spec, CONTEXT)
    assert result.ok and result.detail == "HTTP 202: queued!"
    assert received == [{"path": "/retrain", "auth": "Bearer ci-token", "body": CONTEXT}]
    broken = run_action({"kind": "webhook", "url": f"{url}/broken"}, CONTEXT)
    assert not broken.ok and broken.detail == "HTTP 500: queued!"
    down = run_action({"kind": "webhook", "url": "http://127.0.0.1:9/x", "timeout": 2}, CONTEXT)
    assert not down.ok and "unreachable" in down.detail


def test_celery_task_sent_by_name_runs_on_a_worker():
    app = Celery("trainer", broker="memory://", backend="cache+memory://")
    app.conf.update(broker_transport_options={"polling_interval": 0.01})
    done = threading.Event()
    seen = {}

    @app.task(name="ranker.tasks.retrain")
    def retrain(full, alert=None):
        seen.update(full=full, alert=alert)
        done.set()

    spec = actions("""  retrain:
    kind: celery
    task: ranker.tasks.retrain
    broker: "memory://"
    args: [false]
    queue: training""")["retrain"]
    with start_worker(app, queues=["training"], perform_ping_check=False, shutdown_timeout=10):
        result = run_action(spec, CONTEXT)
        assert result.ok and result.detail.startswith("celery task ranker.tasks.retrain sent: ")
        assert done.wait(10)
    assert seen == {"full": False, "alert": CONTEXT}
