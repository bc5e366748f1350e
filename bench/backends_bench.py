"""The wide-column backends: tablewatch's store against the naive schema on
the same server, in the same run.

Bigtable rows run against Google's Bigtable emulator (cbtemulator), started
here on a free loopback port. The emulator applies roughly 14,000 row
mutations/s, so what decides ingest speed is how many points each mutation
carries: the store packs up to 65,536 points per cell.

- ``write_points`` of 1M points (one series, one day, steps included) in one
  call, and the same points streamed as 1,000 calls of 1,000 points (what a
  collector flushing every few seconds does);
- ``read_points`` of the 1M-point series;
- naive: one row per point (key series|ts, one cell) through the raw
  google-cloud-bigtable data client, bulk mutations of 1,000 rows.

Each backend is one function returning its rows; :data:`RUNNERS` lists them
(a second backend adds its function there). The workload helpers
(:func:`measure_store`) take a store URL, so every backend runs the same one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np

from bench.common import Result, best_of, recent_midnight
from tablewatch.store import open_store

N = 1_000_000
STREAM_CALLS = 1_000
NAIVE_POINTS = 30_000
T0 = float(recent_midnight())
INGEST_TARGET = 150_000


def _data(n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(n) * (86_400 / n)  # one day of points
    return ts, rng.normal(size=n), np.arange(n)


def measure_store(fresh_url: Callable[[], str]) -> dict[str, float]:
    """Ingest and read figures of the store at ``fresh_url()`` (a new, empty
    store each call), in points/s."""
    ts, values, steps = _data()
    figures: dict[str, float] = {}
    stores = []

    def bulk() -> None:
        store = open_store(fresh_url())
        stores.append(store)
        store.write_points("train.loss", {"run": "bench"}, ts, values, steps=steps)

    figures["bulk"] = N / best_of(2, bulk)
    store = stores[-1]
    assert len(store.read_points("train.loss", {"run": "bench"})) == N
    figures["read"] = N / best_of(3, lambda: store.read_points("train.loss", {"run": "bench"}))

    per_call = N // STREAM_CALLS

    def stream() -> None:
        target = open_store(fresh_url())
        stores.append(target)
        for i in range(0, N, per_call):
            target.write_points("serve.latency_s", {"model": "bench"}, ts[i : i + per_call], values[i : i + per_call])

    figures["stream"] = N / best_of(2, stream)
    assert len(stores[-1].read_points("serve.latency_s", {"model": "bench"})) == N
    for s in stores:
        s.close()
    return figures


# -- Bigtable -----------------------------------------------------------------------------------


def _naive_bigtable(host: str, project: str, instance: str) -> float:
    """One row per point, the schema the store exists to avoid: points/s."""
    from google.cloud.bigtable.data import RowMutationEntry, SetCell
    from google.cloud.bigtable_admin_v2 import types as admin_types

    from tablewatch.store.bigtable import BigtableBackend
    from tests.store.bigtable_emulator import raw_data_client

    table_id = "naive_" + uuid.uuid4().hex[:8]
    admin = BigtableBackend(f"bigtable://{project}/{instance}?emulator_host={host}")._admin_client()
    admin.create_table(request={
        "parent": f"projects/{project}/instances/{instance}", "table_id": table_id,
        "table": admin_types.Table(column_families={"p": admin_types.ColumnFamily()}),
    })
    client = raw_data_client(host, project)
    table = client.get_table(instance, table_id)
    ts, values, _ = _data(NAIVE_POINTS)
    ts_us = (ts * 1e6).astype(np.int64)
    series = b"train.loss{run=bench}|"
    started = time.perf_counter()
    for i in range(0, NAIVE_POINTS, 1000):
        table.bulk_mutate_rows([
            RowMutationEntry(series + int(t).to_bytes(8, "big"), [SetCell("p", b"v", float(v).hex(), int(t) // 1000 * 1000)])
            for t, v in zip(ts_us[i : i + 1000], values[i : i + 1000])
        ])
    elapsed = time.perf_counter() - started
    client.close()
    return NAIVE_POINTS / elapsed


def _rows(section: str, ours: dict[str, float], naive: float, naive_name: str, target: int) -> list[Result]:
    """One backend's rows of the table, the same for every backend."""
    return [
        Result(section, "write_points, 1M points in one call", ours["bulk"], "points/s",
               f">= {target:,}", ours["bulk"] >= target),
        Result(section, "write_points, 1,000 calls of 1,000 points", ours["stream"], "points/s",
               f">= {target:,}", ours["stream"] >= target),
        Result(section, naive_name, naive, "points/s"),
        Result(section, "ingest speed-up over naive (streamed calls)", ours["stream"] / naive, "x"),
        Result(section, "read_points, 1M-point series", ours["read"], "points/s"),
    ]


def bigtable_results() -> list[Result]:
    section = "backends (bigtable emulator)"
    from tests.store.bigtable_emulator import INSTANCE, PROJECT, Emulator, find_emulator

    if find_emulator() is None:
        return [Result(section, "skipped: cbtemulator is not installed", float("nan"), "points/s")]
    with Emulator() as emulator:
        ours = measure_store(lambda: emulator.url("b" + uuid.uuid4().hex[:8] + "_"))
        naive = _naive_bigtable(emulator.host, PROJECT, INSTANCE)
    return _rows(section, ours, naive, "naive: one Bigtable row per point, bulk of 1,000", INGEST_TARGET)


# -- HBase (through tablewatch's HBase Thrift gateway) -----------------------------------------

HBASE_INGEST_TARGET = 100_000


def _hbase_gateway(store_url: str):
    """``tablewatch gateway hbase-thrift`` in its own process (as users run it;
    client and server then use both cores): (process, port)."""
    import re
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "tablewatch.cli", "gateway", "hbase-thrift", "--store", store_url, "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    found = re.search(r"listening on 127\.0\.0\.1:(\d+) ", process.stdout.readline())
    if found is None:
        process.kill()
        raise RuntimeError("the HBase Thrift gateway did not start")
    return process, int(found.group(1))


def _naive_hbase(port: int) -> float:
    """One row per point (key series|ts, one cell) through plain happybase,
    batches of 1,000 rows (one mutateRows each): points/s."""
    import struct

    import happybase

    connection = happybase.Connection("127.0.0.1", port, table_prefix="naive" + uuid.uuid4().hex[:8])
    connection.create_table("points", {"p": dict(max_versions=1)})
    table = connection.table("points")
    ts, values, _ = _data(NAIVE_POINTS)
    ts_us = (ts * 1e6).astype(np.int64)
    series = b"train.loss{run=bench}|"
    started = time.perf_counter()
    for i in range(0, NAIVE_POINTS, 1000):
        with table.batch() as batch:
            for t, v in zip(ts_us[i : i + 1000].tolist(), values[i : i + 1000].tolist()):
                batch.put(series + t.to_bytes(8, "big"), {b"p:v": struct.pack("<d", v)})
    elapsed = time.perf_counter() - started
    connection.close()
    return NAIVE_POINTS / elapsed


def hbase_results() -> list[Result]:
    import tempfile

    section = "backends (hbase via gateway)"
    with tempfile.TemporaryDirectory() as tmp:
        gateway, port = _hbase_gateway(f"sqlite:///{tmp}/gateway.db")
        try:
            ours = measure_store(lambda: f"hbase://127.0.0.1:{port}?table_prefix=b{uuid.uuid4().hex[:8]}")
            naive = _naive_hbase(port)
        finally:
            gateway.terminate()
            gateway.wait(30)
    return _rows(section, ours, naive, "naive: one HBase row per point, happybase batches of 1,000", HBASE_INGEST_TARGET)


#: One function per backend, each returning its rows.
RUNNERS: list[Callable[[], list[Result]]] = [bigtable_results, hbase_results]


def run() -> list[Result]:
    return [result for runner in RUNNERS for result in runner()]
