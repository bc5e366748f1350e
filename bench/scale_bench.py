"""The store at scale (issue 7): many series per call, a 1 Hz series written
a point at a time and merged, the tag index, bounded caches. Every figure is
measured beside the old path in the same run, on the embedded store unless
the row says otherwise.

- ``write_points_many``, one point to each of N series (1k, 10k, 100k; the
  model x route x pod shape of a serving fleet), steady state (the series
  already written once), best of 3 — beside the old batch-by-batch path
  (``Store._point_batch`` per batch, still the fallback for unusual input),
  timed on at most 10,000 of the series (its cost is per series). The same at
  5,000 series on the Bigtable emulator and the HBase gateway.
- the same 100k series written for ``SUSTAINED_ROUNDS`` rounds in a row (a
  minute of 1 Hz): the rate of the last rounds beside the first ones, and beside
  the same points written as one chunk per series (what a Collector whose
  ``flush_interval`` is that long writes). One 1-point cell per series per call
  touches every leaf page of the rows of the open hour in SQLite's B-tree, so
  the embedded store slows down round after round: this row says how much.
- a 1 Hz series of ``TW_SCALE_DAYS`` (default 30) days written the way a
  Collector with a 1 s flush writes it — one small chunk per point: calls of
  ``write_points_many`` with one 1-point batch per second (the same cells as
  3,600 flushes; merging off while writing) — read unmerged, then merged by
  ``merge_closed_buckets``, beside the same points written in one bulk call:
  bytes per point (cells of one hourly row), the whole series, a 1-hour window.
- ``find_series`` at 10k and 100k series with 1, 30 and 90 days of history
  (the day cells a series' index row gathers; added directly as index cells,
  since find_series reads nothing else): a filter matching one series, a
  filter matching 1 % of them, listing the metric and every series — beside
  the old scan of every index row (what find_series did before the tag index).
- ``tablewatch server`` fed points that are each a new series: RSS growth per
  1,000 new series between 10k and 40k series, with the default caches (none
  full yet in that window: what an unbounded cache costs) and with caches of
  2,000 entries (full: the bound holds).

``python -m bench scale``; ``TW_SCALE_DAYS=3`` for a quick run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bench.common import Result, best_of, free_port, wait_ready
from tablewatch.store import Store
from tablewatch.store import open_store as _open_store
from tablewatch.store.keys import DAY_S
from tablewatch.store.table import RowMutation, SetCell

SECTION = "scale"
T0 = 1_790_000_000 - 1_790_000_000 % 86_400  # a UTC midnight
WRITE_SIZES = (1_000, 10_000, 100_000)
OLD_PATH_MAX = 10_000
BACKEND_SERIES = 5_000
WRITE_TARGET = 200_000
DAYS = int(os.environ.get("TW_SCALE_DAYS", "30"))
SUSTAINED_SERIES, SUSTAINED_ROUNDS = 100_000, 40
FIND_SIZES = (10_000, 100_000)
HISTORY_DAYS = (1, 30, 90)
FIND_TARGET_MS = 20.0
LIST_TARGET_S = 0.5
RSS_WARM, RSS_END = 10_000, 40_000
POINTS_PER_REQUEST = 1_000


def _open(url: str) -> Store:
    """A store keeping points forever: the bench's points are older than the default retention."""
    return _open_store(url, retention_s={"points": None})


def _fleet(n: int, t: float) -> list[dict[str, Any]]:
    ts = np.array([int(t * 1e6)], dtype=np.int64).astype("datetime64[us]")
    return [{"metric": "serve.latency_s", "tags": {"model": f"m{i % 10}", "route": f"/r{i % 100}", "pod": f"p{i}"},
             "ts": ts, "values": np.array([0.001 * (i % 997)])} for i in range(n)]


def _old_write_many(store: Store, batches: list[Mapping[str, Any]]) -> int:
    """The batch-by-batch path write_points_many took before (still its fallback)."""
    return store._write_batches([
        store._point_batch(b["metric"], b.get("tags"), b["ts"], b["values"], b.get("steps"), False) for b in batches
    ])


def measure_write_many(url: Callable[[], str], n: int, old_max: int = OLD_PATH_MAX) -> tuple[float, float]:
    """(new, old) series-points/s writing one point to each of ``n`` series."""
    new_store, old_store = _open(url()), _open(url())
    try:
        for store in (new_store, old_store):
            store.write_points_many(_fleet(n, T0))  # the series exist: steady state
        sample = min(n, old_max)
        new_rounds = iter([_fleet(n, T0 + k) for k in range(1, 4)])  # built before the clock starts
        old_rounds = iter([_fleet(sample, T0 + k) for k in range(1, 4)])
        new = n / best_of(3, lambda: new_store.write_points_many(next(new_rounds)))
        old = sample / best_of(3, lambda: _old_write_many(old_store, next(old_rounds)))
        frame = new_store.read_points("serve.latency_s", {"model": "m3", "route": "/r3", "pod": "p3"})
        assert len(frame) == 4, len(frame)
    finally:
        new_store.close()
        old_store.close()
    return new, old


def measure_series_points(url: str, n: int) -> float:
    """Series-points/s writing one point to each of ``n`` series through
    ``write_series_points`` (series handles kept, flat columns: the Collector's path)."""
    store = _open(url)
    try:
        fleet = _fleet(n, T0)
        refs = [store.series_ref(b["metric"], b["tags"]) for b in fleet]
        values = np.concatenate([b["values"] for b in fleet])
        counts = np.ones(n, dtype=np.int64)

        def write(t: float) -> int:
            ts = np.full(n, int(t * 1e6), dtype=np.int64).astype("datetime64[us]")
            return store.write_series_points(refs, counts, ts, values)

        write(T0)  # the series exist: steady state
        rounds = iter(range(1, 4))
        return n / best_of(3, lambda: write(T0 + next(rounds)))
    finally:
        store.close()


def write_many_results(tmp: str) -> list[Result]:
    results = []
    for n in WRITE_SIZES:
        new, old = measure_write_many(lambda: f"sqlite:///{tmp}/w{uuid.uuid4().hex[:8]}.db", n)
        note = f"old path {old:,.0f}/s" + (f" on {OLD_PATH_MAX:,} of them" if n > OLD_PATH_MAX else "")
        results.append(Result(SECTION, f"write_points_many, 1 point to each of {n:,} series ({note}, {new / old:.0f}x)",
                              new, "points/s", f">= {WRITE_TARGET:,}/s at 100k" if n == 100_000 else "",
                              (new >= WRITE_TARGET) if n == 100_000 else None))
    n = WRITE_SIZES[-1]
    columns = measure_series_points(f"sqlite:///{tmp}/c{uuid.uuid4().hex[:8]}.db", n)
    results.append(Result(SECTION, f"write_series_points (series handles kept, flat columns: the Collector's path), "
                                   f"1 point to each of {n:,} series", columns, "points/s",
                          note="rounds 2-4 of an hour, as above "
                               "(SQLite gets slower round after round as the hour's rows fill)"))
    return results


def sustained_results(tmp: str, n: int = SUSTAINED_SERIES, rounds: int = SUSTAINED_ROUNDS) -> list[Result]:
    """One point to each of ``n`` series, ``rounds`` times in a row, against the
    same points written as one ``rounds``-point chunk per series."""
    path = f"{tmp}/sustained.db"
    store = _open(f"sqlite:///{path}")
    rates = []
    try:
        store.write_points_many(_fleet(n, T0 - DAY_S))  # the series exist (a day earlier): steady state
        for k in range(rounds):
            batches = _fleet(n, T0 + k)
            started = time.perf_counter()
            store.write_points_many(batches)
            rates.append(n / (time.perf_counter() - started))
    finally:
        store.close()
    chunked = _open(f"sqlite:///{tmp}/sustained_chunked.db")
    try:
        chunked.write_points_many(_fleet(n, T0 - DAY_S))
        ts = (np.arange(rounds, dtype=np.int64) + T0) * 1_000_000
        batches = [{**b, "ts": ts.astype("datetime64[us]"), "values": np.full(rounds, b["values"][0])}
                   for b in _fleet(n, T0)]
        started = time.perf_counter()
        chunked.write_points_many(batches)
        chunked_rate = n * rounds / (time.perf_counter() - started)
    finally:
        chunked.close()
    first, last = max(rates[1:4]), float(np.mean(rates[-4:]))
    name = f"write_points_many, 1 point to each of {n:,} series, {rounds} calls in a row"
    return [
        Result(SECTION, f"{name}: last 4 calls (first calls {first:,.0f}/s, {last / first:.2f}x)", last, "points/s"),
        Result(SECTION, f"{name}: the same points as one {rounds}-point chunk per series (one call)", chunked_rate,
               "points/s", note=f"{chunked_rate / last:.0f}x the last calls: a longer flush_interval at many series"),
    ]


def backend_results() -> list[Result]:
    from bench.backends_bench import _hbase_gateway
    from tests.store.bigtable_emulator import Emulator, find_emulator

    results = []
    if find_emulator() is not None:
        with Emulator() as emulator:
            new, old = measure_write_many(lambda: emulator.url("s" + uuid.uuid4().hex[:8] + "_"), BACKEND_SERIES)
        results.append(Result(SECTION, f"bigtable emulator: 1 point to each of {BACKEND_SERIES:,} series "
                                       f"(old path {old:,.0f}/s, {new / old:.1f}x)", new, "points/s", "> old path",
                              new > old))
    with tempfile.TemporaryDirectory() as tmp:
        gateway, port = _hbase_gateway(f"sqlite:///{tmp}/gateway.db")
        try:
            new, old = measure_write_many(
                lambda: f"hbase://127.0.0.1:{port}?table_prefix=s{uuid.uuid4().hex[:8]}", BACKEND_SERIES)
        finally:
            gateway.terminate()
            gateway.wait(30)
    results.append(Result(SECTION, f"hbase gateway: 1 point to each of {BACKEND_SERIES:,} series "
                                   f"(old path {old:,.0f}/s, {new / old:.1f}x)", new, "points/s", "> old path", new > old))
    return results


# -- a 1 Hz series ----------------------------------------------------------------------------


def _bytes_per_point(store: Store, hour_start: float) -> float:
    key = store.codec.point_key(store.series_ref("gpu.util", {"host": "h"})[2], int(hour_start) // store.codec.bucket_seconds)
    row = store.backend.table("tw_points").read_rows([key])[0]
    from tablewatch.store import chunks

    cells = row.cells["p"]
    points = sum(chunks.count_of(q) for q in cells)
    return sum(len(row.key) + len(q) + len(c[0].value) for q, c in cells.items()) / points


def one_hertz_results(tmp: str) -> list[Result]:
    n = DAYS * DAY_S
    ts = T0 + np.arange(n, dtype=np.float64)
    values = np.round(50 + 30 * np.sin(ts / 3600.0), 2)  # a GPU utilisation with two decimals
    tags = {"host": "h"}
    bulk = _open(f"sqlite:///{tmp}/bulk.db")
    bulk.write_points("gpu.util", tags, ts, values)
    small = _open(f"sqlite:///{tmp}/small.db")
    small.merge_on_read = False
    started = time.perf_counter()
    for hour in range(0, n, 3600):
        small.write_points_many([{"metric": "gpu.util", "tags": tags, "ts": ts[i:i + 1], "values": values[i:i + 1]}
                                 for i in range(hour, min(hour + 3600, n))])
    write_s = time.perf_counter() - started
    window = (T0 + DAY_S * (DAYS // 2) + 7200, T0 + DAY_S * (DAYS // 2) + 10800)

    def read_all(store: Store) -> None:
        assert len(store.read_arrays("gpu.util", tags)[0]) == n

    def read_window(store: Store) -> None:
        assert len(store.read_arrays("gpu.util", tags, *window)[0]) == 3600

    unmerged_bytes = _bytes_per_point(small, window[0])
    started = time.perf_counter()
    read_all(small)
    unmerged_read = time.perf_counter() - started
    unmerged_window = best_of(3, lambda: read_window(small))
    started = time.perf_counter()
    merged_rows = small.merge_closed_buckets()
    merge_s = time.perf_counter() - started
    merged_read = best_of(3, lambda: read_all(small))
    merged_window = best_of(5, lambda: read_window(small))
    bulk_read = best_of(3, lambda: read_all(bulk))
    bulk_window = best_of(5, lambda: read_window(bulk))
    merged_bytes, bulk_bytes = _bytes_per_point(small, window[0]), _bytes_per_point(bulk, window[0])
    small.close()
    bulk.close()
    what = f"{DAYS}-day 1 Hz series ({n:,} points)"
    return [
        Result(SECTION, f"{what}: written as 1-point chunks by write_points_many", n / write_s, "points/s"),
        Result(SECTION, f"{what}: bytes/point, unmerged (merged {merged_bytes:.1f}, bulk {bulk_bytes:.1f})",
               unmerged_bytes, "B"),
        Result(SECTION, f"{what}: merge_closed_buckets ({merged_rows:,} rows)", n / merge_s, "points/s"),
        Result(SECTION, f"{what}: read all, unmerged", unmerged_read * 1000, "ms"),
        Result(SECTION, f"{what}: read all, merged (bulk-written {bulk_read * 1000:,.0f} ms, "
                        f"{merged_read / bulk_read:.2f}x)", merged_read * 1000, "ms", "<= 2x bulk",
               merged_read <= 2 * bulk_read),
        Result(SECTION, f"{what}: 1-hour window, unmerged", unmerged_window * 1000, "ms"),
        Result(SECTION, f"{what}: 1-hour window, merged (bulk-written {bulk_window * 1000:.2f} ms)",
               merged_window * 1000, "ms", "<= bulk + 2 ms", merged_window <= bulk_window + 0.002),
    ]


# -- find_series ------------------------------------------------------------------------------


def _old_find_series(store: Store, metric: str | None, **filters: Any) -> list:
    """find_series before the tag index: every index row of the metric, every day cell."""
    from tablewatch.store.tagindex import matches

    prefix = b"s" if metric is None else b"s" + metric.encode() + b"\x00"
    found = []
    for row in store._index.scan(prefix=prefix, columns=[("meta", b"json")]):
        data = json.loads(row.value("meta", b"json"))
        if matches(data["tags"], filters):
            found.append((data["metric"], data["tags"]))
    return sorted(found, key=lambda s: (s[0], sorted(s[1].items())))


def _add_history(store: Store, n: int, first_day: int, last_day: int) -> None:
    """Day cells first_day..last_day-1 (relative to T0) for every series of the fleet."""
    from tablewatch.store.dayindex import _DAY

    day0 = T0 // DAY_S
    table = store.backend.table("tw_series")
    fleet = _fleet(n, T0)
    for start in range(0, n, 1000):
        rows = []
        for b in fleet[start:start + 1000]:
            metric, _, sid = store.series_ref(b["metric"], b["tags"])
            cells = [SetCell("days", _DAY.pack(day0 + d), b"", (day0 + d + 1) * DAY_S * 1000 - 1)
                     for d in range(first_day, last_day)]
            rows.append(RowMutation(store._series_row_key(metric, sid), cells))
        table.mutate_rows(rows)


def find_results(tmp: str) -> list[Result]:
    results = []
    for n in FIND_SIZES:
        store = _open(f"sqlite:///{tmp}/find{n}.db")
        fleet = _fleet(n, T0)
        for start in range(0, n, 20_000):
            store.write_points_many(fleet[start:start + 20_000])
        have = 1
        for days in HISTORY_DAYS:
            _add_history(store, n, have, days)
            have = days
            one = best_of(5, lambda: store.find_series("serve.latency_s", pod=f"p{n // 2}"))
            many = best_of(5, lambda: store.find_series("serve.latency_s", route="/r7"))
            assert len(store.find_series("serve.latency_s", route="/r7")) == n // 100
            assert len(store.find_series("serve.latency_s", pod=f"p{n // 2}")) == 1
            started = time.perf_counter()
            old = _old_find_series(store, "serve.latency_s", route="/r7")
            old_s = time.perf_counter() - started
            assert len(old) == n // 100
            results.append(Result(SECTION, f"find_series, {n:,} series, {days} d history: route filter "
                                            f"({n // 100:,} found; old scan {old_s * 1000:,.0f} ms)",
                                  many * 1000, "ms", f"< {FIND_TARGET_MS:.0f} ms", many * 1000 < FIND_TARGET_MS))
            results.append(Result(SECTION, f"find_series, {n:,} series, {days} d history: pod filter (1 found)",
                                  one * 1000, "ms", f"< {FIND_TARGET_MS:.0f} ms", one * 1000 < FIND_TARGET_MS))
            # (the old scan's cost is the same whatever the filter: it reads every index row and day cell)
        listing = best_of(3, lambda: store.find_series("serve.latency_s"))
        everything = best_of(3, lambda: store.find_series())
        assert len(store.find_series()) == n
        results.append(Result(SECTION, f"find_series, {n:,} series: list the metric (find_series(None) "
                                        f"{everything * 1000:,.0f} ms)", listing * 1000, "ms",
                              f"< {LIST_TARGET_S * 1000:.0f} ms", max(listing, everything) < LIST_TARGET_S))
        store.close()
    return results


# -- ingest server RSS ------------------------------------------------------------------------

_SERVER = """
import sys
import tablewatch.collectors.server as server, tablewatch.store.dayindex as dayindex, tablewatch.store.timeseries as ts
entries = int(sys.argv[1])
if entries:
    server.SERIES_CACHE_ENTRIES = ts.SERIES_CACHE_ENTRIES = entries
    dayindex.KNOWN_DAYS = 2 * entries
from tablewatch.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _anonymous_rss(pid: int) -> int:
    """Resident anonymous memory (heap), without the pages of the memory-mapped
    SQLite file, which the kernel may drop at any time."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/PID/status")


def _rss_per_1000(store_url: str, cache_entries: int) -> float:
    """MB of RSS the server grows per 1,000 new series between RSS_WARM and RSS_END series."""
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVER, str(cache_entries), "server", "--store", store_url,
                                "--port", str(port), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        rss = {}
        with httpx.Client(base_url=url, headers={"Content-Type": "application/json"}, timeout=120) as client:
            for start in range(0, RSS_END, POINTS_PER_REQUEST):
                body = json.dumps([{"metric": "serve.requests", "tags": {"pod": f"p{i}", "route": "/a"},
                                    "ts": T0 + 1.0, "value": 1.0} for i in range(start, start + POINTS_PER_REQUEST)])
                response = client.post("/api/v1/points", content=body)
                assert response.status_code == 200, response.text[:200]
                if start + POINTS_PER_REQUEST in (RSS_WARM, RSS_END):
                    rss[start + POINTS_PER_REQUEST] = _anonymous_rss(process.pid)
        return (rss[RSS_END] - rss[RSS_WARM]) / 2**20 / ((RSS_END - RSS_WARM) / 1000)
    finally:
        process.terminate()
        process.wait(30)


def rss_results(tmp: str) -> list[Result]:
    unbounded = _rss_per_1000(f"sqlite:///{tmp}/rss_default.db", 0)
    bounded = _rss_per_1000(f"sqlite:///{tmp}/rss_small.db", 2_000)
    return [Result(SECTION, f"ingest server, every point a new series: RSS per 1,000 series once the caches are "
                            f"full (2,000 entries; default caches not yet full in this window: {unbounded:.2f} MB)",
                   bounded, "MB", "~0 (bounded)", bounded < 0.05)]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        results = write_many_results(tmp)
        results += sustained_results(tmp)
        results += backend_results()
        results += one_hertz_results(tmp)
        results += find_results(tmp)
        results += rss_results(tmp)
    return results


if __name__ == "__main__":
    from bench.common import print_table

    print_table(run())
