"""The Collector at many series: 100,000 series each logged once a second
(a model server's latency per model × route × pod).

Measured in a child process of its own (so that its peak RSS is its own), in
two phases. Registration: the 100,000 series are new to the store; they are
logged once a second until the store has written a point of each (at most
``WARMUP_MAX_S``): its own row, the time that took and the points written of
those offered meanwhile. Steady state, offered for 60 s after that:
points the collector wrote per second while it was offered 100,000/s (from
5 s in to the end, the slope of the points written sampled every 0.2 s: the
count moves a whole take at a time), the backlog at its start and end, the
peak backlog (points in memory, ``stats()["buffered"]``) beside
``max_buffered_points``, the peak lag (``stats()["lag_s"]``), points sent to
the spool, the peak RSS, and how long ``close()`` took. Twice: with the
Collector's defaults, and as the README advises for this many series (a
5 s ``flush_interval`` and a 10M ``max_buffered_points``, so that each write
holds ~5 points per series: the embedded store's cost is per chunk). Main's
path (before this change) is not run here: its figures are the ones measured
in issue 7 on this machine, printed beside ours as "issue's figure".
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from bench.common import Result

SECTION = "collectors"
SERIES = 100_000
SECONDS = 60
#: Seconds into the steady state before its throughput is measured (from there to the end).
SETTLE_S = 5
MAX_BUFFERED = 1_000_000
WARMUP_MAX_S = 60
#: The configuration the README advises for this many series (rows of their own).
TUNED_FLUSH_INTERVAL_S, TUNED_MAX_BUFFERED = 5.0, 10_000_000

CHILD = r"""
import json, sys, threading, time
import numpy
import psutil
from tablewatch import Collector
from tablewatch.store import open_store

url, n_series, seconds, max_buffered = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
warmup_max, flush_interval = float(sys.argv[5]), float(sys.argv[7])
open_store(url).close()
tags = [{"model": f"m{i % 10}", "route": f"/r{i // 10 % 100}", "pod": f"pod{i // 1000}"} for i in range(n_series)]
collector = Collector(url, max_buffered_points=max_buffered, flush_interval=flush_interval)
process = psutil.Process()
peak = {"buffered": 0, "lag_s": 0.0, "rss": process.memory_info().rss}
settled, timeline = {}, []
stop = threading.Event()

def sample():
    while not stop.wait(0.2):
        stats = collector.stats()
        peak["buffered"] = max(peak["buffered"], stats["buffered"])
        peak["lag_s"] = max(peak["lag_s"], stats["lag_s"])
        peak["rss"] = max(peak["rss"], process.memory_info().rss)
        if "t" in settled:
            timeline.append((time.monotonic(), stats["written"] + stats["replayed"]))

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
log = collector.log

def offer(seconds, done=lambda: False, at=None, then=lambda: None):
    # Log every series once a second for `seconds` (or until done(); then() once `at` seconds are offered):
    # (seconds offered, time taken, late seconds).
    start = time.monotonic()
    late = second = 0
    while second < seconds and not done():
        if second == at:
            then()
        t = time.time()
        for i in range(n_series):
            log("serve.latency_s", 0.01, ts=t, tags=tags[i])
        second += 1
        wait = start + second - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            late += 1
    return second, time.monotonic() - start, late

def stored():
    stats = collector.stats()
    return stats["written"] + stats["replayed"]

warmup_seconds, warmup_s, _ = offer(warmup_max, lambda: stored() >= n_series)
warmup_written = stored()
# The backlog of the registration (in memory and spooled) is written before the steady state is measured.
draining = time.monotonic()
while (collector.stats()["buffered"] or collector.spool.own_files()) and time.monotonic() - draining < warmup_max:
    time.sleep(0.2)
drain_s = time.monotonic() - draining
steady_base, backlog = stored(), collector.stats()["buffered"]
peak.update(buffered=0, lag_s=0.0)
settle = int(sys.argv[6])
offered_seconds, offered_s, late = offer(seconds, at=settle,
                                         then=lambda: settled.update(t=time.monotonic(), stored=stored()))
stats = collector.stats()
# Points written/s: the slope of a line through (time, points written) sampled every 0.2 s from `settle`
# s in (the count moves in steps of a whole take: a line through all of them, not two ends of one).
times, counts = zip(*timeline)
settled_rate = float(numpy.polyfit(times, counts, 1)[0])
stop.set()
sampler.join()
closing = time.monotonic()
stored = collector.close()
close_s = time.monotonic() - closing
final = collector.stats()
print(json.dumps({"warmup_offered": n_series * warmup_seconds, "warmup_s": warmup_s, "warmup_written": warmup_written,
                  "drain_s": drain_s,
                  "offered": n_series * offered_seconds, "offered_s": offered_s, "settled_rate": settled_rate,
                  "backlog_at_end": stats["buffered"], "lag_at_end": stats["lag_s"],
                  "written": stats["written"] + stats["replayed"] - steady_base, "backlog_at_start": backlog,
                  "late_seconds": late, "peak_buffered": peak["buffered"], "peak_lag_s": peak["lag_s"],
                  "peak_rss_mb": peak["rss"] / 2**20, "close_s": close_s, "stored_at_close": stored,
                  "spooled": final["spooled"], "dropped": final["dropped"]}))
"""


def measure(n_series: int = SERIES, seconds: int = SECONDS, max_buffered: int = MAX_BUFFERED,
            warmup_max_s: float = WARMUP_MAX_S, settle_s: int = SETTLE_S, flush_interval: float = 1.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHILD, f"sqlite:///{tmp}/many.db", str(n_series), str(seconds),
                               str(max_buffered), str(warmup_max_s), str(settle_s), str(flush_interval)],
                              capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def keeps_up(m: dict, flush_interval: float) -> bool:
    """The throughput matches the offer, nothing was late, and what waits at the
    end is what a flush interval and a write hold (the flusher writes a take of
    every series at once), not a growing backlog."""
    return (m["settled_rate"] >= 0.95 * SERIES and m["late_seconds"] == 0
            and m["backlog_at_end"] <= m["backlog_at_start"] + (flush_interval + 2) * SERIES)


def steady_rows(m: dict, name: str, flush_interval: float, max_buffered: int) -> list[Result]:
    rate = m["written"] / m["offered_s"]
    return [
        Result(SECTION, f"{name}: points written/s while offered {SERIES:,}/s, from {SETTLE_S} s in to the end "
                        f"(whole window {rate:,.0f}/s: its last flush still in flight)",
               m["settled_rate"], "points/s", f">= {SERIES:,} (keeps up: backlog not growing, nothing late)",
               keeps_up(m, flush_interval),
               f"steady state, after registration; backlog {m['backlog_at_start']:,} at its start, "
               f"{m['backlog_at_end']:,} at its end (lag {m['lag_at_end']:.1f} s); {m['late_seconds']} late "
               "seconds; issue's figure on main: 11-17k"),
        Result(SECTION, f"{name}: peak backlog in memory", m["peak_buffered"], "points",
               f"<= max_buffered_points + one take ({max_buffered:,} + {SERIES:,})",
               m["peak_buffered"] <= max_buffered + 2 * SERIES, "issue's figure on main: 5M and growing"),
        Result(SECTION, f"{name}: peak lag (stats()['lag_s'])", m["peak_lag_s"], "s"),
        Result(SECTION, f"{name}: points sent to the spool (store slower than the offer)", m["spooled"], "points",
               note=f"dropped: {m['dropped']}"),
        Result(SECTION, f"{name}: peak RSS", m["peak_rss_mb"], "MB", note="issue's figure on main: 560 MB and growing"),
        Result(SECTION, f"{name}: close() time", m["close_s"], "s", "<= close_timeout (5 s) + one write",
               m["close_s"] <= 10, "issue's figure on main: 80 s"),
    ]


def run() -> list[Result]:
    m = measure()
    registered = m["warmup_written"] >= SERIES
    rows = [
        Result(SECTION, f"Collector, {SERIES:,} new series x 1 Hz: time until the store has written a point of each "
                        f"({m['warmup_written']:,} of {m['warmup_offered']:,} offered points written by then)",
               m["warmup_s"], "s", f"all {SERIES:,} within {WARMUP_MAX_S} s", registered,
               f"the series are new: index rows written once each; then {m['drain_s']:.0f} s without logging "
               "to write the backlog before the steady state"),
    ]
    rows += steady_rows(m, f"Collector, {SERIES:,} series x 1 Hz for {SECONDS} s (defaults)", 1.0, MAX_BUFFERED)
    # As the README advises for many series: a buffer is handed on (waking the flusher) after
    # max_buffered_points / (4 x series) points, so a longer flush_interval needs a larger bound to
    # make bigger chunks (the embedded store's cost is per chunk, not per point).
    tuned = measure(flush_interval=TUNED_FLUSH_INTERVAL_S, max_buffered=TUNED_MAX_BUFFERED)
    rows += steady_rows(tuned, f"Collector, {SERIES:,} series x 1 Hz for {SECONDS} s, flush_interval="
                               f"{TUNED_FLUSH_INTERVAL_S:.0f} s, max_buffered_points={TUNED_MAX_BUFFERED:,}",
                        TUNED_FLUSH_INTERVAL_S, TUNED_MAX_BUFFERED)
    return rows
