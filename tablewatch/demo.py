"""``tablewatch demo``: the whole product on one store, in one command.

1. **Fill** the store with 14 days of a realistic workload, written through
   the Collector (``write_task_run``, ``log``, ``log_prediction``,
   ``write_training_run``) with event times derived from a fixed anchor (the
   start of the current hour), so that running it again writes the same
   records:

   - three pipelines (``nightly-etl``, ``feature-store``, ``reports``) with
     retries and failures — real exceptions raised by the task functions below,
     so every failure carries its ``file:line`` — and one task,
     ``nightly-etl/extract``, whose duration doubles over the last day;
   - two model families (``ranker``, ``churn``), a dozen training runs each,
     with loss and accuracy curves, parameters and final metrics (one run of
     ``churn`` fails);
   - serving traffic of the ``ranker`` service: ``serve.latency_s`` tagged as
     the ASGI middleware tags it (service, route template, method, status
     class; a 20-minute outage of 5xx on day 5), and every prediction's
     features through ``log_prediction``, with the feature ``age`` drifting
     from day 12 on;
   - new rows of the ``ranker`` dataset arriving every hour (``data.rows``),
     enough since the last ``ranker`` training run to ask whether to retrain.

2. **Evaluate** the example rules file (``examples/rules.yaml``) once with the
   real engine: messages go to Slack when ``SLACK_*`` is set, else to the
   console; the alert state is persisted, so a second run does not notify again.

3. **Serve** (unless ``--no-serve``): ``tablewatch server`` (ingest, reads and
   Slack's buttons), ``tablewatch alerts run`` and ``tablewatch dashboard`` as
   subprocesses, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tablewatch.extras import install_hint

if TYPE_CHECKING:  # the CLI imports this module for its parser: process, HTTP and random are loaded on use
    import random
    import subprocess

DAY_S = 86_400
HOUR_S = 3_600
DEMO_DAYS = 14
DRIFT_DAY = 12                       # `age` drifts from the start of day 12 of 14
REGRESSION_HOURS = 30                # `nightly-etl/extract` is slow over the last 30 hours
DEFAULT_STORE = "sqlite://tablewatch-demo.db"
DEFAULT_RULES = Path(__file__).resolve().parent.parent / "examples" / "rules.yaml"
DEFAULT_SERVER_PORT = 8080
DEFAULT_DASHBOARD_PORT = 8501
MARKER_METRIC = "tablewatch.demo.filled"
SERVICE = "ranker"
MODEL = "ranker"
COUNTRIES = ("fr", "de", "us", "gb", "es")
COUNTRY_WEIGHTS = (0.3, 0.25, 0.25, 0.1, 0.1)
PREDICTIONS_PER_HOUR = 240
ROWS_PER_HOUR = 2_000


def anchor_of(now: float) -> int:
    """The demo's fixed point: the start of the current hour (UTC). Every
    timestamp the demo writes is derived from it."""
    return int(now) - int(now) % HOUR_S


# -- the workload's task functions: real code that really raises ------------------------------


class WarehouseTimeout(ConnectionError):
    pass


def extract(rows: int, flaky: bool) -> int:
    if flaky:
        raise WarehouseTimeout("warehouse did not answer within 30 s (connection reset by peer)")
    return rows


def transform(rows: int, bad_batch: bool) -> int:
    if bad_batch:
        record = {"user_id": 42, "ts": None}
        return int(record["ts"])  # TypeError: the day a batch came with null timestamps
    return rows


def load(rows: int, disk_full: bool) -> int:
    if disk_full:
        raise OSError(28, "No space left on device", "/data/warehouse/part-0007.parquet")
    return rows


def snapshot(flaky: bool) -> None:
    if flaky:
        raise TimeoutError("feature store snapshot lock held by another writer")


def validate(schema_changed: bool) -> None:
    if schema_changed:
        raise KeyError("column 'session_length' missing from the snapshot")


def render(flaky: bool) -> None:
    if flaky:
        raise RuntimeError("chart renderer crashed: font cache corrupted")


def _no_fault(_: bool) -> None:
    return None


def train_epoch(epoch: int, oom_at: int | None) -> None:
    if oom_at is not None and epoch >= oom_at:
        raise MemoryError("CUDA out of memory: tried to allocate 2.50 GiB")


# -- filling the store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FillReport:
    anchor: int
    skipped: bool
    task_runs: int = 0
    training_runs: int = 0
    predictions: int = 0
    points: int = 0
    seconds: float = 0.0


class Progress:
    """A plain progress bar on stderr (no dependency); one line per stage when
    stderr is not a terminal."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown: tuple[int, str] | None = None
        self._label = ""

    def advance(self, label: str, n: int = 1) -> None:
        if self._label and label != self._label and not self.tty:
            print(f"  {self._label}: done", file=self.stream, flush=True)
        self._label = label
        self.done = min(self.total, self.done + n)
        if self.done >= self.total and not self.tty:
            print(f"  {label}: done", file=self.stream, flush=True)
            return
        percent = 100 * self.done // self.total
        if not self.tty or self._shown == (percent, label):
            return
        self._shown = (percent, label)
        filled = self.width * self.done // self.total
        end = "\n" if self.done >= self.total else ""
        print(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {percent:3d}%  {label:<16}", end=end,
              file=self.stream, flush=True)


def _error_location(exc: BaseException) -> str | None:
    from tablewatch.collectors.tracking import error_location

    return error_location(exc.__traceback__)


class _Writer:
    """Records the workload through one Collector, counting what it wrote."""

    def __init__(self, collector: Any, host: str) -> None:
        self.collector = collector
        self.host = host
        self.task_runs = 0
        self.training_runs = 0
        self.predictions = 0
        self.points = 0

    def attempt(self, pipeline: str, task: str, run_id: str, attempt: int, start: float, duration: float,
                body: Callable[[], Any], will_retry: bool) -> bool:
        """Run ``body`` (the task's real code) and record the attempt as the
        task tracker does: a TaskRun (with the exception and its file:line when
        it raised), a point of ``task.duration_s``, and ``task.retries`` when
        the call is over. True when it succeeded."""
        from datetime import datetime, timezone

        from tablewatch.collectors.tracking import DURATION_METRIC, RETRIES_METRIC
        from tablewatch.store import TaskRun

        try:
            body()
            error = None
        except Exception as e:  # the workload's own failures, recorded like the tracker records them
            error = e
        status = "success" if error is None else ("retry" if will_retry else "failure")
        utc = timezone.utc
        self.collector.write_task_run(TaskRun(
            pipeline=pipeline, task=task, run_id=run_id, status=status, attempt=attempt,
            queued_at=datetime.fromtimestamp(start - 2.0, utc), started_at=datetime.fromtimestamp(start, utc),
            ended_at=datetime.fromtimestamp(start + duration, utc), duration_s=duration, host=self.host,
            error_type=None if error is None else type(error).__qualname__,
            error_message=None if error is None else str(error),
            error_location=None if error is None else _error_location(error),
        ))
        tags = {"pipeline": pipeline, "task": task}
        self.collector.log(DURATION_METRIC, duration, ts=start + duration, tags=tags)
        self.points += 1
        if status != "retry":
            self.collector.log(RETRIES_METRIC, float(attempt - 1), ts=start + duration, tags=tags)
            self.points += 1
        self.task_runs += 1
        return error is None


def _pipeline_runs(anchor: int, rng: random.Random) -> Iterator[tuple[str, str, float, list[tuple[str, float, Callable]]]]:
    """(pipeline, run id, start, [(task, duration, body-of(fault))]) for 14 days,
    in time order. Faults are decided here, deterministically."""
    start = anchor - DEMO_DAYS * DAY_S
    plans = []
    # nightly-etl: every 6 hours (the etl-slow rule wants >= 3 runs a day)
    for slot in range(DEMO_DAYS * 4):
        t = start + slot * 6 * HOUR_S + 15 * 60
        slow = t >= anchor - REGRESSION_HOURS * HOUR_S
        plans.append(("nightly-etl", t, [
            ("extract", rng.gauss(44.0 if slow else 20.0, 1.5), lambda fault: extract(120_000, fault)),
            ("transform", rng.gauss(35.0, 2.0), lambda fault: transform(120_000, fault)),
            ("load", rng.gauss(12.0, 1.0), lambda fault: load(120_000, fault)),
        ]))
    # feature-store: every 3 hours
    for slot in range(DEMO_DAYS * 8):
        t = start + slot * 3 * HOUR_S + 5 * 60
        plans.append(("feature-store", t, [
            ("snapshot", rng.gauss(8.0, 0.8), snapshot),
            ("validate", rng.gauss(3.0, 0.3), validate),
            ("publish", rng.gauss(5.0, 0.5), _no_fault),
        ]))
    # reports: daily
    for day in range(DEMO_DAYS):
        t = start + day * DAY_S + 7 * HOUR_S
        plans.append(("reports", t, [
            ("aggregate", rng.gauss(60.0, 5.0), _no_fault),
            ("render", rng.gauss(25.0, 3.0), render),
            ("email", rng.gauss(2.0, 0.2), _no_fault),
        ]))
    plans.sort(key=lambda p: p[1])
    for pipeline, t, tasks in plans:
        if t < anchor:
            yield pipeline, f"{pipeline}-{time.strftime('%Y%m%dT%H%M', time.gmtime(t))}", t, tasks


def _fill_pipelines(writer: _Writer, anchor: int, rng: random.Random, progress: Progress) -> None:
    import random

    fail_rng = random.Random(7)
    for pipeline, run_id, t, tasks in _pipeline_runs(anchor, rng):
        day = int((t - (anchor - DEMO_DAYS * DAY_S)) // DAY_S)
        for task, duration, body in tasks:
            duration = max(0.5, duration)
            # transient faults: retried up to 3 attempts; hard faults on set days: no retry
            flaky = fail_rng.random() < (0.12 if task in ("extract", "snapshot") else 0.0)
            hard = ((pipeline, task, day) in {("nightly-etl", "load", 4), ("nightly-etl", "transform", 9),
                                               ("feature-store", "validate", 6), ("reports", "render", 3)}
                    and t % DAY_S < 6 * HOUR_S + 3 * HOUR_S)
            attempt, ok = 1, False
            while True:
                fault = hard or (flaky and attempt == 1) or (flaky and attempt == 2 and fail_rng.random() < 0.3)
                retry = not hard and fault and attempt < 3
                ok = writer.attempt(pipeline, task, run_id, attempt, t, duration if not fault else duration * 0.4,
                                    lambda: body(fault), retry)
                t += duration if not fault else duration * 0.4 + 30.0 * attempt
                if ok or not retry:
                    break
                attempt += 1
            if not ok:
                break  # the pipeline stops at its first failed task
        progress.advance("pipelines")


def _curve(rng: random.Random, epochs: int, quality: float) -> Iterator[tuple[int, float, float, float]]:
    for epoch in range(epochs):
        progress = 1.0 - math.exp(-epoch / (epochs / 4))
        train_loss = 1.2 * math.exp(-epoch / (epochs / 3)) + 0.15 / quality + rng.gauss(0, 0.01)
        val_loss = train_loss * 1.08 + 0.02 + rng.gauss(0, 0.01)
        accuracy = 0.55 + (quality - 0.55) * progress + rng.gauss(0, 0.004)
        yield epoch, train_loss, val_loss, accuracy


def _fill_training(writer: _Writer, anchor: int, rng: random.Random, progress: Progress) -> None:
    from datetime import datetime, timezone

    from tablewatch.collectors.training import RUN_NAME_TAG, RUN_TAG
    from tablewatch.store import TrainingRun

    utc = timezone.utc
    start = anchor - DEMO_DAYS * DAY_S
    families = {
        # name: (first run's offset, hours between runs, base quality, params)
        "ranker": (6 * HOUR_S, 21 * HOUR_S, 0.86, lambda i: {"lr": [0.01, 0.003, 0.001][i % 3], "layers": 4 + i % 3,
                                                             "batch_size": 256, "optimizer": "adamw"}),
        "churn": (3 * HOUR_S, 26 * HOUR_S, 0.78, lambda i: {"max_depth": 4 + i % 4, "n_estimators": 200 + 50 * (i % 5),
                                                           "learning_rate": 0.05}),
    }
    for name, (offset, every, base, params_of) in families.items():
        for i in range(12):
            run_id = f"{name}-{i + 1:03d}"
            began = start + offset + i * every
            epochs = 40
            epoch_s = rng.uniform(240.0, 420.0)
            quality = base + 0.004 * i + rng.gauss(0, 0.006)
            oom_at = 23 if (name == "churn" and i == 6) else None
            tags = {RUN_TAG: run_id, RUN_NAME_TAG: name}
            last: dict[str, float] = {}
            error = None
            for epoch, train_loss, val_loss, accuracy in _curve(rng, epochs, quality):
                ts = began + (epoch + 1) * epoch_s
                try:
                    train_epoch(epoch, oom_at)
                except MemoryError as e:
                    error = e
                    break
                for metric, value in (("train.loss", train_loss), ("val.loss", val_loss), ("val.accuracy", accuracy)):
                    writer.collector.log(metric, value, step=epoch, ts=ts, tags=tags)
                    writer.points += 1
                last = {"loss": val_loss, "accuracy": accuracy}
            ended = began + (epoch + 1) * epoch_s
            run_tags = {"dataset": f"{name}-v{1 + i // 4}"}
            if error is not None:
                run_tags["error_location"] = _error_location(error) or ""
            writer.collector.write_training_run(TrainingRun(
                name=name, run_id=run_id, status="failure" if error else "success",
                started_at=datetime.fromtimestamp(began, utc), ended_at=datetime.fromtimestamp(ended, utc),
                params=params_of(i), metrics={k: round(v, 5) for k, v in last.items()}, tags=run_tags,
                host="gpu-1", error=None if error is None else f"{type(error).__name__}: {error}",
            ))
            writer.training_runs += 1
            progress.advance("training runs")


def _fill_serving(writer: _Writer, anchor: int, rng: random.Random, progress: Progress) -> None:
    start = anchor - DEMO_DAYS * DAY_S
    drift_from = start + DRIFT_DAY * DAY_S
    outage_start = start + 5 * DAY_S + 14 * HOUR_S + 10 * 60  # day 5, 14:10 UTC: 20 minutes of 5xx
    routes = (("/predict/{model}", "POST", 0.9), ("/explain/{model}", "POST", 0.07), ("/healthz", "GET", 0.03))
    for hour in range(DEMO_DAYS * 24):
        t0 = start + hour * HOUR_S
        daily = 0.6 + 0.4 * math.sin(2 * math.pi * ((hour % 24) - 8) / 24) ** 2
        n = int(PREDICTIONS_PER_HOUR * daily) + 40
        drifted = t0 >= drift_from
        for k in range(n):
            ts = t0 + (k + rng.random()) * HOUR_S / n
            u = rng.random()
            route, method = routes[0][:2] if u < 0.9 else (routes[1][:2] if u < 0.97 else routes[2][:2])
            error_rate = 0.3 if outage_start <= ts < outage_start + 20 * 60 else 0.0  # one short outage
            status = "5xx" if rng.random() < error_rate else ("4xx" if rng.random() < 0.01 else "2xx")
            latency = rng.lognormvariate(math.log(0.035 if route != "/healthz" else 0.002), 0.35)
            writer.collector.log("serve.latency_s", round(latency, 4), ts=ts,
                                 tags={"service": SERVICE, "route": route, "method": method, "status": status})
            writer.points += 1
            if route == "/healthz" or status != "2xx":
                continue
            age = rng.gauss(47.0 if drifted else 38.0, 9.0)
            income = rng.lognormvariate(math.log(42_000), 0.4)
            country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
            score = 1.0 / (1.0 + math.exp(-(age - 40.0) / 8.0 - (income - 42_000) / 60_000))
            writer.collector.log_prediction(MODEL, {"age": round(age, 1), "income": round(income, 2),
                                                    "country": country}, round(score, 4), ts=ts)
            writer.predictions += 1
        # new rows of the ranker dataset, every hour, from two sources
        for source, share in (("events", 0.7), ("labels", 0.3)):
            rows = round(ROWS_PER_HOUR * share * rng.uniform(0.8, 1.2))
            writer.collector.log("data.rows", float(rows), ts=t0 + 50 * 60, tags={"dataset": MODEL, "source": source})
            writer.points += 1
        if hour % 6 == 5:
            progress.advance("serving traffic", 6)


def _already_filled(store: Any, anchor: int) -> bool:
    for series in store.find_series(MARKER_METRIC):
        ts, _, _ = store.read_arrays(series.metric, series.tags, anchor, anchor + 1)
        if len(ts):
            return True
    return False


def fill(store: Any, anchor: int, *, progress_stream: Any = None) -> FillReport:
    """Write the demo workload ending at ``anchor`` into ``store`` (a Store),
    unless a previous run already did for this anchor (the prediction
    sketches are the one record a second write would add to, so the whole fill
    is skipped)."""
    import random

    from tablewatch.collectors.sdk import Collector

    if _already_filled(store, anchor):
        return FillReport(anchor, skipped=True)
    began = time.perf_counter()
    rng = random.Random(20261120)
    progress = Progress(total=(DEMO_DAYS * (4 + 8 + 1)) + 24 + DEMO_DAYS * 24, stream=progress_stream)
    collector = Collector(store, flush_interval=0.5)
    writer = _Writer(collector, host="worker-1")
    try:
        _fill_pipelines(writer, anchor, rng, progress)
        _fill_training(writer, anchor, rng, progress)
        _fill_serving(writer, anchor, rng, progress)
        collector.log(MARKER_METRIC, 1.0, ts=anchor, tags={"demo": "v1"})
    finally:
        collector.close()
    return FillReport(anchor, False, writer.task_runs, writer.training_runs, writer.predictions, writer.points,
                      time.perf_counter() - began)


# -- the alerts ----------------------------------------------------------------------------------------


def evaluate_rules(store: Any, rules_path: str | Path, env: dict[str, str] | None = None) -> Any:
    """One cycle of the real engine over the rules file, every rule evaluated
    now; its report. The alert state in the store keeps a second run from
    notifying again what is still firing."""
    from tablewatch.alerts.engine import Engine
    from tablewatch.alerts.rules import load_rules
    from tablewatch.alerts.slack import notifier_from_env

    class DemoEngine(Engine):
        def next_due(self, rule: Any, last: float | None) -> float:
            return float("-inf")  # every rule now, whatever its schedule (etl-slow's is 06:30 daily)

    rules = load_rules(str(rules_path))
    engine = DemoEngine(rules, store, notifier=notifier_from_env(os.environ if env is None else env))
    try:
        return engine.cycle()
    finally:
        engine.release()


def print_alerts(store: Any) -> None:
    from tablewatch.alerts.state import AlertState

    state = AlertState(store)
    alerts = state.alerts(["pending", "firing"])
    events = [i for i in state.incidents(start=time.time() - DAY_S) if i.kind in ("new_data", "task_event")]
    print(f"\n{len(alerts)} alerts pending or firing, {len(events)} events in the last day:")
    for a in sorted(alerts, key=lambda a: (a.rule, sorted(a.labels.items()))) + events:
        labels = ",".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
        print(f"  {a.state if a.kind not in ('new_data', 'task_event') else 'event':<8} {a.rule:<24} {labels}")
        print(f"           {a.summary}")


# -- serving ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    health_url: str | None


def services(store_url: str, rules: str, server_port: int, dashboard_port: int) -> list[Service]:
    exe = [sys.executable, "-m", "tablewatch.cli"]
    found = [
        Service("server", [*exe, "server", "--store", store_url, "--port", str(server_port), "--rules", rules,
                           "--log-level", "warning"], f"http://127.0.0.1:{server_port}/healthz"),
        Service("alerts", [*exe, "alerts", "run", "--rules", rules, "--store", store_url, "--every", "60"], None),
    ]
    if _has_dashboard():
        found.append(Service("dashboard", [*exe, "dashboard", "--store", store_url, "--port", str(dashboard_port)],
                             f"http://127.0.0.1:{dashboard_port}/_stcore/health"))
    return found


def _has_dashboard() -> bool:
    """Whether the dashboard and its extra (Streamlit, Plotly) are installed."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("tablewatch.dashboard.command", "streamlit", "plotly"))
    except (ModuleNotFoundError, ValueError):
        return False


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def service_environment(store_url: str, rules: str) -> dict[str, str]:
    """The services' environment, and so their actions' (Retrain runs
    examples/retrain.py): this Python first on PATH (an action's ``python``
    has tablewatch), the demo's store as $TABLEWATCH_STORE, and the rules
    file's folder as $TABLEWATCH_RULES_DIR."""
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [path])]),
            "TABLEWATCH_STORE": store_url, "TABLEWATCH_RULES_DIR": str(Path(rules).resolve().parent)}


def serve(store_url: str, rules: str, server_port: int, dashboard_port: int, stop: Any = None) -> int:
    """Start the server, the alert runner and the dashboard; stop them all on
    Ctrl-C (or when ``stop``, a threading.Event, is set)."""
    import signal
    import subprocess

    started: list[tuple[Service, subprocess.Popen]] = []
    interrupted = False

    def on_signal(*_: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    env = service_environment(store_url, rules)
    try:
        for service in services(store_url, rules, server_port, dashboard_port):
            # their own process group: Ctrl-C reaches the demo, which stops them in order
            started.append((service, subprocess.Popen(service.command, start_new_session=True, env=env)))
        for service, process in started:
            if service.health_url and not _wait_healthy(service.health_url, process):
                print(f"tablewatch demo: {service.name} did not become healthy ({' '.join(service.command)})",
                      file=sys.stderr)
                return 1
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        server = f"http://127.0.0.1:{server_port}"
        print("\nRunning (Ctrl-C stops everything):")
        if _has_dashboard():
            print(f"  dashboard   {dashboard}")
            print(f"              {dashboard}/tasks?pipeline=nightly-etl&task=extract&range=7d   extract got slower")
            print(f"              {dashboard}/drift?model={MODEL}&feature=age&range=7d        age drifted on day 12")
            print(f"              {dashboard}/training?model={MODEL}                           twelve runs, curves")
            print(f"              {dashboard}/alerts                                           what fired, and why")
        else:
            print(f"  dashboard   (not installed: {install_hint('dashboard')})")
        print(f"  server      {server}   ingest, reads, Slack buttons (POST /slack/actions)")
        print(f"              curl '{server}/api/v1/series?metric=task.duration_s'")
        print(f"  alerts      `tablewatch alerts status --store {store_url}`  (the runner ticks every 60 s)")
        sys.stdout.flush()
        while not interrupted and not (stop is not None and stop.is_set()):
            for service, process in started:
                if process.poll() is not None:
                    print(f"tablewatch demo: {service.name} exited with {process.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for service, process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for service, process in reversed(started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if started:
            print(f"tablewatch demo: stopped {', '.join(service.name for service, _ in started)}")


# -- the command -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    rules = str(args.rules)
    if not Path(rules).is_file():
        print(f"tablewatch demo: error: rules file {rules} not found (--rules FILE)", file=sys.stderr)
        return 2
    anchor = anchor_of(time.time() if args.anchor is None else args.anchor)
    print(f"tablewatch demo: filling {args.store} with {DEMO_DAYS} days of work ending "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(anchor))} UTC", flush=True)
    with open_store(args.store) as store:
        report = fill(store, anchor)
        if report.skipped:
            print("  already filled for this hour: nothing written again")
        else:
            print(f"  {report.task_runs} task runs, {report.training_runs} training runs, {report.predictions:,} "
                  f"predictions, {report.points:,} points in {report.seconds:.1f} s")
        slack = "Slack" if any(os.environ.get(v) for v in ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL")) else "the console"
        print(f"\nEvaluating {rules} (messages to {slack}):", flush=True)
        cycle = evaluate_rules(store, rules)
        failed = f", {cycle.failed} failed" if cycle.failed else ""
        print(f"  {cycle.rules} rules evaluated, {cycle.enqueued} new notifications, {cycle.sent} sent{failed}")
        for error in cycle.errors:
            print(f"  error: {error}", file=sys.stderr)
        print_alerts(store)
    if args.no_serve:
        return 0
    if args.port_base is not None:
        server_port, dashboard_port = args.port_base, args.port_base + 1
    else:
        server_port, dashboard_port = DEFAULT_SERVER_PORT, DEFAULT_DASHBOARD_PORT
    return serve(args.store, rules, server_port, dashboard_port)


def _anchor(text: str) -> float:
    from tablewatch.alerts.commands import _epoch

    try:
        return _epoch(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ISO-8601 (e.g. 2026-12-01T18:00:00Z) or epoch seconds, "
                                         f"got {text!r}") from None


def add_commands(commands: argparse._SubParsersAction, port_type: Callable[[str], int]) -> None:
    demo = commands.add_parser("demo", help="fill a store with 14 days of demo data, evaluate the example rules, "
                                            "then serve the dashboard, the server and the alert runner")
    demo.add_argument("--store", default=DEFAULT_STORE,
                      help=f"store URL to fill (default: {DEFAULT_STORE}, never $TABLEWATCH_STORE)")
    demo.add_argument("--rules", default=str(DEFAULT_RULES), metavar="FILE",
                      help="the rules file to evaluate (default: examples/rules.yaml)")
    demo.add_argument("--anchor", type=_anchor, metavar="TIME",
                      help="the end of the demo's 14 days, ISO-8601 UTC or epoch seconds, rounded down to the hour "
                           "(default: the start of the current hour)")
    demo.add_argument("--no-serve", action="store_true", help="stop after the data and the alerts")
    demo.add_argument("--port-base", type=port_type, metavar="N",
                      help=f"the server on N, the dashboard on N+1 (default: {DEFAULT_SERVER_PORT} and "
                           f"{DEFAULT_DASHBOARD_PORT}; the alerts' links point to the rules file's dashboard_url)")
    demo.set_defaults(handler=cmd_demo)
