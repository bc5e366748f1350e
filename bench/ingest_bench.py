"""HTTP ingest: ``tablewatch server`` (a real uvicorn in its own process, as
deployed) fed over loopback by an httpx client.

Rows (best of 3 runs, each on fresh series of one embedded store; bodies
serialised before timing; every point is read back afterwards to check it was
stored):

- row form, 1,000 points per request over 10 series (what a shell or another
  language sends), one connection; and four connections at once;
- columnar form, 1,000 points of one series per request, one connection;
- what a user does without batching: one point per request (curl in a loop);
- the same points written in-process with ``Store.write_points``, one call per
  series and 1,000 points (the floor the HTTP layer adds to).

Part of the ``collectors`` section (``bench/collectors_bench.py`` calls
:func:`run`); ``python -m bench.ingest_bench`` runs it alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.common import Result, free_port, recent_midnight, wait_ready

SECTION = "collectors"
BATCH = 1_000
SERIES_PER_BATCH = 10
REQUESTS = 200
REPEAT = 3
SINGLE_POINT_REQUESTS = 500
TARGET = 100_000  # points/s
T0 = float(recent_midnight())


@contextmanager
def ingest_server(store_url: str) -> Iterator[tuple[str, Any]]:
    """``tablewatch server`` in a subprocess on a free loopback port; its URL
    and a psutil handle on the process (for its CPU time)."""
    import psutil

    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TABLEWATCH_INGEST_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tablewatch.cli", "server", "--store", store_url, "--port", str(port),
         "--log-level", "warning"], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def row_bodies(metric: str, requests: int = REQUESTS) -> list[bytes]:
    bodies = []
    for r in range(requests):
        base = T0 + r * BATCH
        bodies.append(json.dumps([
            {"metric": metric, "tags": {"host": f"h{i % SERIES_PER_BATCH}"}, "ts": base + i, "value": i * 0.25}
            for i in range(BATCH)
        ], separators=(",", ":")).encode())
    return bodies


def columnar_bodies(metric: str, requests: int = REQUESTS) -> list[bytes]:
    return [json.dumps({"metric": metric, "tags": {"host": "h0"}, "ts": (T0 + r * BATCH + np.arange(BATCH)).tolist(),
                        "values": np.arange(BATCH, dtype=float).tolist()}, separators=(",", ":")).encode()
            for r in range(requests)]


def post_all(url: str, bodies: list[bytes], connections: int = 1) -> float:
    """Seconds to POST every body (split over ``connections`` clients)."""
    import httpx

    def send(part: list[bytes]) -> None:
        with httpx.Client(base_url=url, headers={"Content-Type": "application/json"}, timeout=60) as client:
            for body in part:
                response = client.post("/api/v1/points", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:200]}")

    parts = [bodies[i::connections] for i in range(connections)]
    threads = [threading.Thread(target=send, args=(part,)) for part in parts]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def _stored(store_url: str, metric: str) -> int:
    from tablewatch.store import open_store

    with open_store(store_url) as store:
        return sum(len(store.read_arrays(metric, s.tags)[0]) for s in store.find_series(metric))


def store_floor(tmp: str) -> float:
    """points/s of Store.write_points for the row-form workload, in-process."""
    from tablewatch.store import open_store

    with open_store(f"sqlite:///{tmp}/floor.db") as store:
        start = time.perf_counter()
        for r in range(REQUESTS):
            for h in range(SERIES_PER_BATCH):
                ts = T0 + r * BATCH + np.arange(h, BATCH, SERIES_PER_BATCH)
                store.write_points("floor.m", {"host": f"h{h}"}, ts, ts * 0.0)
        return REQUESTS * BATCH / (time.perf_counter() - start)


def run() -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store_url = f"sqlite:///{tmp}/ingest.db"
        sent: dict[str, int] = {}
        cpu_per_point: dict[str, float] = {}

        def rate(kind: str, connections: int = 1) -> float:
            """Best of REPEAT runs, each on fresh series (so no run rewrites another's points)."""
            best, least_cpu = 0.0, float("inf")
            for attempt in range(REPEAT):
                metric = f"ingest.{kind}{connections}.{attempt}"
                if kind == "single":
                    bodies = [json.dumps([{"metric": metric, "ts": T0 + i, "value": 1.0}]).encode()
                              for i in range(SINGLE_POINT_REQUESTS)]
                    points = SINGLE_POINT_REQUESTS
                else:
                    bodies = (row_bodies if kind == "rows" else columnar_bodies)(metric)
                    points = REQUESTS * BATCH
                sent[metric] = points
                cpu_before = sum(server.cpu_times()[:2])
                best = max(best, points / post_all(url, bodies, connections))
                least_cpu = min(least_cpu, (sum(server.cpu_times()[:2]) - cpu_before) / points)
            cpu_per_point[f"{kind}{connections}"] = least_cpu
            return best

        with ingest_server(store_url) as (url, server):
            post_all(url, row_bodies("ingest.warmup", 10))
            row_rate = rate("rows")
            rows4_rate = rate("rows", connections=4)
            column_rate = rate("columns")
            single_rate = rate("single")
        for metric, expected in sent.items():
            stored = _stored(store_url, metric)
            if stored != expected:
                raise RuntimeError(f"{metric}: {stored} points stored, {expected} sent")
        floor = store_floor(tmp)
    results.append(Result(SECTION, "HTTP ingest, row form, 1,000 points/request (10 series), 1 connection",
                          row_rate, "points/s", ">= 100,000 points/s", row_rate >= TARGET,
                          f"best of {REPEAT} x {REQUESTS} requests, uvicorn + httpx over loopback"))
    results.append(Result(SECTION, "HTTP ingest, row form, 1,000 points/request, 4 connections", rows4_rate,
                          "points/s", note="client threads share the machine's cores with the server"))
    capacity = 1 / cpu_per_point["rows1"]
    results.append(Result(SECTION, "HTTP ingest server capacity, row form: points per server CPU-second", capacity,
                          "points/s", ">= 100,000 points/s", capacity >= TARGET,
                          f"{1000 * BATCH * cpu_per_point['rows1']:.1f} ms of server CPU per 1,000-point request"))
    results.append(Result(SECTION, "HTTP ingest, columnar form, 1,000 points/request, 1 connection", column_rate,
                          "points/s", ">= 100,000 points/s", column_rate >= TARGET))
    results.append(Result(SECTION, "HTTP ingest, 1 point/request (curl in a loop)", single_rate, "points/s",
                          note=f"{SINGLE_POINT_REQUESTS} requests"))
    results.append(Result(SECTION, "same points via Store.write_points in-process (no HTTP)", floor, "points/s",
                          note="1 call per series per 1,000 points"))
    return results


if __name__ == "__main__":
    from bench.common import print_table

    print_table(run())
