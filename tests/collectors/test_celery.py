"""Celery instrumentation with a real worker (in-memory broker, cache result
backend), recording through a real Collector into a real store."""

from __future__ import annotations

import logging
import threading

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker

from tablewatch.collectors import Collector
from tablewatch.collectors.celery import (
    DURATION_METRIC,
    PUBLISHED_HEADER,
    QUEUE_WAIT_METRIC,
    RETRIES_METRIC,
    instrument,
)
from tablewatch.errors import ValidationError
from tablewatch.store import open_store

FLAKY_FAILURES = 2


def make_app() -> Celery:
    app = Celery("nightly-etl", broker="memory://", backend="cache+memory://")
    # The in-memory transport polls; 10 ms keeps the test quick.
    app.conf.update(broker_transport_options={"polling_interval": 0.01}, task_default_queue="tablewatch-test")
    calls = {"flaky": 0, "auto": 0}
    lock = threading.Lock()

    @app.task(bind=True, name="etl.flaky", max_retries=5)
    def flaky(self, x):
        with lock:
            calls["flaky"] += 1
            n = calls["flaky"]
        if n <= FLAKY_FAILURES:
            try:
                raise ConnectionError(f"warehouse unreachable ({n})")
            except ConnectionError as e:
                raise self.retry(exc=e, countdown=0)
        return x * 2

    @app.task(bind=True, name="etl.auto", autoretry_for=(TimeoutError,), retry_kwargs={"max_retries": 3,
                                                                                      "countdown": 0})
    def auto(self):
        with lock:
            calls["auto"] += 1
            n = calls["auto"]
        if n == 1:
            raise TimeoutError("slow upstream")
        return "ok"

    @app.task(name="etl.broken")
    def broken():
        raise ValueError("bad row 17")

    return app


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Run the tasks on a real worker once; yield the store."""
    path = tmp_path_factory.mktemp("celery") / "tasks.db"
    app = make_app()
    root = logging.getLogger()
    saved = root.level, list(root.handlers)  # the worker reconfigures logging: give it back after
    with open_store(f"sqlite:///{path}") as store:
        with Collector(store, flush_interval=60, spool_dir=path.parent / "spool") as collector:
            handle = instrument(app, collector)
            with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
                assert app.tasks["etl.flaky"].delay(21).get(timeout=30, interval=0.01) == 42
                assert app.tasks["etl.auto"].delay().get(timeout=30, interval=0.01) == "ok"
                with pytest.raises(ValueError, match="bad row 17"):
                    app.tasks["etl.broken"].delay().get(timeout=30, interval=0.01)
            handle.disconnect()
            collector.flush()
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        yield store


def test_a_task_that_fails_twice_then_succeeds_has_three_attempts(recorded):
    runs = sorted(recorded.read_task_runs("nightly-etl", "etl.flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status) for r in runs] == [(1, "retry"), (2, "retry"), (3, "success")]
    assert len({r.run_id for r in runs}) == 1  # one call, three attempts
    for run in runs[:2]:
        assert run.error_type == "ConnectionError" and "warehouse unreachable" in run.error_message
        assert run.error_location.endswith(f"{__file__.rsplit('/', 1)[-1]}:{_line_of('raise ConnectionError')}")
    assert runs[2].error_type is None
    for run in runs:
        assert run.host  # the worker hostname
        assert run.queued_at is not None and run.started_at >= run.queued_at
        assert run.ended_at >= run.started_at and run.duration_s >= 0
    retries = recorded.read_points(RETRIES_METRIC, {"pipeline": "nightly-etl", "task": "etl.flaky"})
    assert retries["value"].tolist() == [2.0]  # recorded once, when the call is over
    durations = recorded.read_points(DURATION_METRIC, {"pipeline": "nightly-etl", "task": "etl.flaky"})
    assert len(durations) == 3
    waits = recorded.read_points(QUEUE_WAIT_METRIC, {"pipeline": "nightly-etl", "task": "etl.flaky"})
    assert len(waits) == 3 and (waits["value"] >= 0).all() and (waits["value"] < 10).all()


def test_autoretry_is_recorded_as_a_retry(recorded):
    runs = sorted(recorded.read_task_runs("nightly-etl", "etl.auto"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.error_type) for r in runs] == [(1, "retry", "TimeoutError"), (2, "success", None)]
    retries = recorded.read_points(RETRIES_METRIC, {"pipeline": "nightly-etl", "task": "etl.auto"})
    assert retries["value"].tolist() == [1.0]


def test_a_failure_names_the_error_and_where_it_was_raised(recorded):
    (run,) = recorded.read_task_runs("nightly-etl", "etl.broken")
    assert (run.status, run.attempt, run.error_type, run.error_message) == ("failure", 1, "ValueError", "bad row 17")
    assert run.error_location.endswith(f":{_line_of('raise ValueError')}")
    retries = recorded.read_points(RETRIES_METRIC, {"pipeline": "nightly-etl", "task": "etl.broken"})
    assert retries["value"].tolist() == [0.0]


def test_signals_of_other_apps_are_ignored_and_disconnect_stops_recording():
    class Recorder:
        def __init__(self) -> None:
            self.runs, self.points = [], []

        def write_task_run(self, run):
            self.runs.append(run)

        def log(self, *args, **kwargs):
            self.points.append(args)

    mine, other = Celery("mine"), Celery("other")

    @other.task(name="other.task", shared=False)
    def other_task():
        return 1

    recorder = Recorder()
    with instrument(mine, recorder, pipeline="custom") as handle:
        assert handle.pipeline == "custom"
        other_task.request.update(retries=0, hostname="w")
        signals.task_prerun.send(sender=other_task, task_id="x", task=other_task, args=(), kwargs={})
        signals.task_postrun.send(sender=other_task, task_id="x", task=other_task, args=(), kwargs={},
                                  retval=1, state="SUCCESS")
        headers = {}
        signals.before_task_publish.send(sender="other.task", headers=headers, body=None)
        assert PUBLISHED_HEADER not in headers  # not a task of this app
    assert recorder.runs == [] and recorder.points == []
    assert not handle.connected
    with pytest.raises(ValidationError, match="collector"):
        instrument(mine, object())


def _line_of(text: str) -> int:
    with open(__file__) as f:
        for number, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return number
    raise AssertionError(text)
