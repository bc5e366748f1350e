"""The Collector SDK against what a training job would use instead: MLflow.

Rows:

- ``collector.log()`` per point from a Python loop, 1,000,000 points, timed
  until ``close()`` returned and everything is durable in the embedded store
  (then checked: every point read back);
- the same inside ``collector.run(...)`` (points tagged with the run);
- MLflow (SQLite tracking store in a temp dir): ``MlflowClient.log_batch`` in
  batches of 1,000, and ``log_metric`` per point (measured on a smaller count,
  extrapolated: labelled so);
- our speed-up over ``log_batch`` (target >= 100x);
- reading back one run's 1,000,000 points (``Store.read_arrays``) vs MLflow's
  ``get_metric_history`` on what MLflow holds, as points/s;
- 100,000 series each logged once a second (bench/many_series_bench.py):
  points written/s, peak backlog, lag, spooled, peak RSS, close() time.

Each measurement is one function, so more rows (HTTP ingest) can be added.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from pathlib import Path

from bench.common import Result, best_of

SECTION = "collectors"
POINTS = 1_000_000
LOG_TARGET = 1_000_000  # points/s
MLFLOW_BATCH = 1_000
MLFLOW_BATCH_POINTS = 20_000
MLFLOW_PER_POINT = 500


def collector_log_rate(n: int = POINTS, repeat: int = 5) -> float:
    """Best points/s of ``collector.log()`` in a loop, durable after close()."""
    from tablewatch import Collector
    from tablewatch.store import open_store

    best = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            open_store(url).close()  # tables exist: we time logging, not schema creation
            gc.collect()
            start = time.perf_counter()
            collector = Collector(url)
            log = collector.log
            for i in range(n):
                log("train.loss", 0.5, step=i)
            collector.close()
            elapsed = time.perf_counter() - start
            _check_stored(url, "train.loss", None, n)
        best = max(best, n / elapsed)
    return best


def collector_run_log_and_read(tmp: str, n: int = POINTS) -> tuple[float, float, dict]:
    """(points/s logging inside a run, points/s reading the run's points back, run tags)."""
    from tablewatch import Collector
    from tablewatch.store import open_store

    url = f"sqlite:///{tmp}/run.db"
    open_store(url).close()
    gc.collect()
    start = time.perf_counter()
    collector = Collector(url)
    with collector.run("bench") as run:
        log = collector.log
        for i in range(n):
            log("train.loss", 0.5, step=i)
    collector.close()
    log_rate = n / (time.perf_counter() - start)
    tags = {"run": run.run_id, "run_name": "bench"}
    _check_stored(url, "train.loss", tags, n)
    with open_store(url) as store:
        store.read_arrays("train.loss", tags)  # warm the page cache, as MLflow's is after writing
        seconds = best_of(3, lambda: store.read_arrays("train.loss", tags))
    return log_rate, n / seconds, tags


def _check_stored(url: str, metric: str, tags: dict | None, n: int) -> None:
    from tablewatch.store import open_store

    with open_store(url) as store:
        steps = store.read_arrays(metric, tags)[2]
    if len(steps) != n or len(set(steps.tolist())) != n:
        raise AssertionError(f"{metric}: {len(steps)} points stored, {n} logged")


class MLflow:
    """An MLflow SQLite tracking store in a temp dir, with one run."""

    def __init__(self, tmp: str) -> None:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        experiment = self.client.create_experiment("bench", artifact_location=str(Path(tmp) / "artifacts"))
        self.run_id = self.client.create_run(experiment).info.run_id

    def log_batch_rate(self, n: int = MLFLOW_BATCH_POINTS, batch: int = MLFLOW_BATCH) -> float:
        from mlflow.entities import Metric

        t0 = int(time.time() * 1000)
        start = time.perf_counter()
        for lo in range(0, n, batch):
            metrics = [Metric("train.loss", 0.5, t0 + i, i) for i in range(lo, min(n, lo + batch))]
            self.client.log_batch(self.run_id, metrics=metrics)
        return n / (time.perf_counter() - start)

    def log_metric_rate(self, n: int = MLFLOW_PER_POINT) -> float:
        t0 = int(time.time() * 1000)
        start = time.perf_counter()
        for i in range(n):
            self.client.log_metric(self.run_id, "per.point", 0.5, timestamp=t0 + i, step=i)
        return n / (time.perf_counter() - start)

    def read_rate(self) -> tuple[float, int]:
        history = self.client.get_metric_history(self.run_id, "train.loss")
        seconds = best_of(3, lambda: self.client.get_metric_history(self.run_id, "train.loss"))
        return len(history) / seconds, len(history)


def http_ingest_results() -> list[Result]:
    """The HTTP ingest rows (``tablewatch server``): see bench/ingest_bench.py."""
    from bench import ingest_bench

    return ingest_bench.run()


def many_series_results() -> list[Result]:
    """100,000 series each logged once a second: see bench/many_series_bench.py."""
    from bench import many_series_bench

    return many_series_bench.run()


def run() -> list[Result]:
    results: list[Result] = []
    results.extend(many_series_results())
    ours = collector_log_rate()
    results.append(Result(SECTION, "collector.log() loop, 1M points, durable after close()", ours, "points/s",
                          ">= 1,000,000 points/s", ours >= LOG_TARGET, "best of 5"))
    results.extend(http_ingest_results())
    with tempfile.TemporaryDirectory() as tmp:
        in_run, read_ours, _ = collector_run_log_and_read(tmp)
        results.append(Result(SECTION, "collector.log() loop inside collector.run(), 1M points", in_run, "points/s"))
        try:
            mlflow = MLflow(tmp)
        except ImportError:
            results.append(Result(SECTION, "MLflow not installed (pip install 'mlflow>=2.10')", 0, "points/s"))
            results.append(Result(SECTION, "read a run's 1M points: Store.read_arrays", read_ours, "points/s"))
            return results
        batch = mlflow.log_batch_rate()
        per_point = mlflow.log_metric_rate()
        read_theirs, held = mlflow.read_rate()
    results.append(Result(SECTION, f"MLflow log_batch (batches of {MLFLOW_BATCH:,}, sqlite)", batch, "points/s",
                          note=f"{MLFLOW_BATCH_POINTS:,} points"))
    results.append(Result(SECTION, "MLflow log_metric per point (sqlite)", per_point, "points/s",
                          note=f"measured on {MLFLOW_PER_POINT:,} points; 1M would take "
                               f"{POINTS / per_point / 3600:,.1f} h (extrapolated)"))
    results.append(Result(SECTION, "collector.log() vs MLflow log_batch", ours / batch, "x", ">= 100x",
                          ours / batch >= 100))
    results.append(Result(SECTION, "read a run's 1M points: Store.read_arrays", read_ours, "points/s"))
    results.append(Result(SECTION, "read a run's points: MLflow get_metric_history", read_theirs, "points/s",
                          note=f"the {held:,} points MLflow holds"))
    results.append(Result(SECTION, "read-back speed vs MLflow get_metric_history", read_ours / read_theirs, "x"))
    return results
