"""A store filled like a small ML platform, through the Store API and the
collectors: an ETL pipeline with retries and failures, training runs, a model
server, drifting features. Deterministic (seeded), relative to ``now``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from tablewatch import Collector
from tablewatch.alerts.state import ActionRecord, AlertRecord, AlertState, NotificationRecord, fingerprint
from tablewatch.store import Store
from tablewatch.store.sketches import DistributionSketch, SketchRecord

HOUR = 3600
DAY = 86400
PIPELINE = "nightly-etl"
TASKS = ("extract", "transform", "load")
RUNS = ("r-lr-0.1", "r-lr-0.01", "r-lr-0.001")
MODEL = "ranker"
ROUTES = ("/predict/{model}", "/explain/{model}")
FEATURES = ("age", "country", "income")


@dataclass(frozen=True)
class Sample:
    now: float
    pipeline_run_ids: tuple[str, ...]
    collector_run_id: str


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def fill(store: Store, now: float) -> Sample:
    rng = np.random.default_rng(7)
    run_ids = _pipeline(store, now, rng)
    _training(store, now, rng)
    _serving(store, now, rng)
    _drift(store, now, rng)
    collector_run = _through_collectors(store)
    _alerts(store, now)
    return Sample(now, run_ids, collector_run)


def _pipeline(store: Store, now: float, rng: np.random.Generator) -> tuple[str, ...]:
    """Every 6 hours over 7 days a run of extract → transform → load; extract
    gets slower in the last two days, transform retries now and then, load
    failed twice."""
    task_runs, durations, retries = [], {t: ([], []) for t in TASKS}, {t: ([], []) for t in TASKS}
    run_ids = []
    for i in range(28):
        run_start = now - 7 * DAY + i * 6 * HOUR + 600
        run_id = f"{_dt(run_start):%Y-%m-%dT%H}"
        run_ids.append(run_id)
        clock = run_start
        for task in TASKS:
            base = {"extract": 20.0, "transform": 35.0, "load": 12.0}[task]
            if task == "extract" and i >= 20:
                base *= 2
            attempts = 2 if task == "transform" and i % 5 == 2 else 1
            for attempt in range(1, attempts + 1):
                duration = float(base * rng.uniform(0.8, 1.2))
                status = "success"
                error = {}
                if attempt < attempts:
                    status = "retry"
                    error = {"error_type": "ConnectionError", "error_message": "warehouse reset the connection",
                             "error_location": "etl/transform.py:42"}
                elif task == "load" and i in (9, 23):
                    status = "failure"
                    error = {"error_type": "KeyError", "error_message": "'customer_id'",
                             "error_location": "etl/load.py:88"}
                task_runs.append({"pipeline": PIPELINE, "task": task, "run_id": run_id, "attempt": attempt,
                                  "status": status, "started_at": clock, "ended_at": clock + duration,
                                  "host": "worker-1", **error})
                durations[task][0].append(clock + duration)
                durations[task][1].append(duration)
                clock += duration + 5
            retries[task][0].append(clock)
            retries[task][1].append(attempts - 1)
    store.write_task_runs(task_runs)
    store.write_points_many(
        [{"metric": "task.duration_s", "tags": {"pipeline": PIPELINE, "task": t}, "ts": ts, "values": v}
         for t, (ts, v) in durations.items()]
        + [{"metric": "task.retries", "tags": {"pipeline": PIPELINE, "task": t}, "ts": ts, "values": v}
           for t, (ts, v) in retries.items()]
    )
    return tuple(run_ids)


def _training(store: Store, now: float, rng: np.random.Generator) -> None:
    """Three runs of ``ranker`` with different learning rates, 3,000 steps each."""
    for k, (run_id, lr) in enumerate(zip(RUNS, (0.1, 0.01, 0.001))):
        started = now - 2 * DAY + k * 4 * HOUR
        steps = np.arange(3000)
        ts = started + steps * 2.0
        loss = np.exp(-steps * lr / 20) + 0.3 + rng.normal(0, 0.02, len(steps))
        loss[1000 + 500 * k] += 1.5  # a spike that downsampling must keep
        auc_steps = steps[::100]
        auc = 0.95 - 0.4 * np.exp(-auc_steps * lr / 20)
        tags = {"run": run_id, "run_name": MODEL}
        store.write_points_many([
            {"metric": "train.loss", "tags": tags, "ts": ts, "values": loss, "steps": steps},
            {"metric": "val.auc", "tags": tags, "ts": ts[::100], "values": auc, "steps": auc_steps},
            {"metric": "system.cpu_percent", "tags": tags, "ts": ts[::60], "values": rng.uniform(80, 180, 50)},
        ])
        store.write_training_run({
            "name": MODEL, "run_id": run_id, "status": "success", "started_at": started, "ended_at": ts[-1],
            "params": {"lr": lr, "layers": 4, "optimizer": "adam"},
            "metrics": {"val.auc": float(auc[-1]), "train.loss": float(loss[-1])}, "host": "gpu-1",
        })


def _serving(store: Store, now: float, rng: np.random.Generator) -> None:
    """24 hours of requests on two routes; errors pick up in the last hours."""
    batches = []
    for r, route in enumerate(ROUTES):
        n = 4000 // (r + 1)
        ts = np.sort(now - DAY + rng.uniform(0, DAY, n))
        latency = rng.lognormal(np.log(0.03 * (r + 1)), 0.4, n)
        errors = rng.uniform(0, 1, n) < np.where(ts > now - 4 * HOUR, 0.08, 0.01)
        for status, mask in (("2xx", ~errors), ("5xx", errors)):
            batches.append({"metric": "serve.latency_s",
                            "tags": {"service": MODEL, "route": route, "method": "POST", "status": status},
                            "ts": ts[mask], "values": latency[mask]})
    store.write_points_many(batches)


def _drift(store: Store, now: float, rng: np.random.Generator) -> None:
    """Hourly sketches of three features over 48 hours; in the last 8 hours
    ``age`` shifts, ``country`` gains a new country, ``income`` stays put."""
    records = []
    first_hour = int(now // HOUR) * HOUR - 47 * HOUR
    for h in range(48):
        start = first_hour + h * HOUR
        shifted = h >= 40
        values = {
            "age": rng.normal(48 if shifted else 40, 10, 2000),
            "income": rng.lognormal(10, 0.5, 2000),
            "country": rng.choice(["fr", "de", "us", "br"] if shifted else ["fr", "de", "us"], 2000,
                                  p=[0.2, 0.2, 0.2, 0.4] if shifted else [0.4, 0.3, 0.3]),
        }
        for feature, data in values.items():
            sketch = DistributionSketch.create()
            if feature == "country":
                for value in data:
                    sketch.add(str(value))
            else:
                sketch.numeric.add_many(data)
            records.append(SketchRecord(MODEL, feature, start * 1_000_000, HOUR, f"{h:016x}", 0, sketch))
    store.write_sketches(records)


def _through_collectors(store: Store) -> str:
    """A few real task attempts, a real retry and a real training run through the SDK."""
    calls = {"n": 0}
    with Collector(store, flush_interval=3600) as collector:
        @collector.track(pipeline="hourly-features", task="compute", retries=2, retry_on=(ConnectionError,), backoff=0)
        def compute() -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("feature store busy")

        compute()
        compute()
        with collector.run("ranker-online", params={"lr": 0.05}) as run:
            for step in range(50):
                collector.log("train.loss", 1.0 / (step + 1), step=step)
            run_id = run.run_id
        for _ in range(50):
            collector.log_prediction("ranker-online", {"age": random.gauss(40, 10)}, 0.5)
    return run_id


FIRING_RULE, RESOLVED_RULE = "ranker-drift", "etl-slow"


def _alerts(store: Store, now: float) -> None:
    """The alert engine's state: a drift alert firing (notified, Retrain
    pressed by alice), an ETL alert resolved yesterday, and a silence."""
    state = AlertState(store)
    firing_labels = {"model": MODEL, "feature": "age"}
    fp = fingerprint(FIRING_RULE, firing_labels)
    firing = AlertRecord(
        incident_id=AlertState.new_incident_id(fp, now - 2 * HOUR), rule=FIRING_RULE, kind="drift",
        labels=firing_labels, fingerprint=fp, state="firing", severity="critical",
        summary="ranker age: wasserstein 0.31 (threshold 0.1), effect 0.31 vs the 1d before: drifted",
        value=0.31, threshold=0.1, dashboard_path=f"/drift?model={MODEL}&feature=age",
        active_at=now - 2 * HOUR, fired_at=now - 2 * HOUR, action="retrain")
    state.save_alert(firing)
    resolved_labels = {"pipeline": PIPELINE, "task": "extract"}
    fp2 = fingerprint(RESOLVED_RULE, resolved_labels)
    resolved = AlertRecord(
        incident_id=AlertState.new_incident_id(fp2, now - 2 * DAY), rule=RESOLVED_RULE, kind="regression",
        labels=resolved_labels, fingerprint=fp2, state="resolved", summary="extract p95 duration 41.2 s vs 20.3 s",
        value=41.2, baseline=20.3, dashboard_path=f"/tasks?pipeline={PIPELINE}&task=extract",
        active_at=now - 2 * DAY, fired_at=now - 2 * DAY, resolved_at=now - DAY,
        acknowledged_by="bob", acknowledged_at=now - 2 * DAY + 600)
    state.save_alert(resolved)
    for incident, kind, at in ((firing, "firing", now - 2 * HOUR), (resolved, "firing", now - 2 * DAY),
                               (resolved, "resolved", now - DAY)):
        note = NotificationRecord(id=AlertState.notification_id(f"{incident.incident_id}/{kind}"),
                                  incident_id=incident.incident_id, kind=kind, channel="#ml-alerts",
                                  text=f"[{kind}] {incident.summary}", created_at=at, rule=incident.rule)
        state.enqueue(note)
        state.mark_sent(note, at + 1, message_ts=f"{at:.6f}")
    state.record_action(ActionRecord(firing.incident_id, "retrain", "alice", now - HOUR, "ran",
                                     "celery task retrain_ranker queued"))
    state.record_action(ActionRecord(resolved.incident_id, "acknowledge", "bob", now - 2 * DAY + 600, "acknowledged"))
    state.add_silence({"rule": RESOLVED_RULE}, now + DAY, "bob", "warehouse migration this week", starts_at=now - HOUR)
