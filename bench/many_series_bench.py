"""The Collector at many series: 100,000 series each logged once a second
(a model server's latency per model × route × pod), offered for ~15 s.

Measured in a child process of its own (so that its peak RSS is its own):
points the collector wrote per second while it was offered 100,000/s, the
peak backlog (points in memory, ``stats()["buffered"]``) beside
``max_buffered_points``, the peak lag (``stats()["lag_s"]``), points sent to
the spool, the peak RSS, and how long ``close()`` took. Main's path (before
this change) is not run here: its figures are the ones measured in issue 7
on this machine, printed beside ours as "issue's figure".
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from bench.common import Result

SECTION = "collectors"
SERIES = 100_000
SECONDS = 15
MAX_BUFFERED = 1_000_000

CHILD = r"""
import json, sys, threading, time
import psutil
from tablewatch import Collector
from tablewatch.store import open_store

url, n_series, seconds, max_buffered = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
open_store(url).close()
tags = [{"model": f"m{i % 10}", "route": f"/r{i // 10 % 100}", "pod": f"pod{i // 1000}"} for i in range(n_series)]
collector = Collector(url, max_buffered_points=max_buffered)
process = psutil.Process()
peak = {"buffered": 0, "lag_s": 0.0, "rss": process.memory_info().rss}
stop = threading.Event()

def sample():
    while not stop.wait(0.2):
        stats = collector.stats()
        peak["buffered"] = max(peak["buffered"], stats["buffered"])
        peak["lag_s"] = max(peak["lag_s"], stats["lag_s"])
        peak["rss"] = max(peak["rss"], process.memory_info().rss)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
log = collector.log
start = time.monotonic()
late = 0
for second in range(int(seconds)):
    t = time.time()
    for i in range(n_series):
        log("serve.latency_s", 0.01, ts=t, tags=tags[i])
    wait = start + second + 1 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    else:
        late += 1
offered_s = time.monotonic() - start
stats = collector.stats()
stop.set()
sampler.join()
closing = time.monotonic()
stored = collector.close()
close_s = time.monotonic() - closing
final = collector.stats()
print(json.dumps({"offered": n_series * int(seconds), "offered_s": offered_s, "written": stats["written"] + stats["replayed"],
                  "late_seconds": late, "peak_buffered": peak["buffered"], "peak_lag_s": peak["lag_s"],
                  "peak_rss_mb": peak["rss"] / 2**20, "close_s": close_s, "stored_at_close": stored,
                  "spooled": final["spooled"], "dropped": final["dropped"]}))
"""


def measure(n_series: int = SERIES, seconds: int = SECONDS, max_buffered: int = MAX_BUFFERED) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHILD, f"sqlite:///{tmp}/many.db", str(n_series), str(seconds),
                               str(max_buffered)], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> list[Result]:
    m = measure()
    name = f"Collector, {SERIES:,} series x 1 Hz for {SECONDS} s"
    rate = m["written"] / m["offered_s"]
    return [
        Result(SECTION, f"{name}: points written/s while offered {SERIES:,}/s", rate, "points/s",
               f">= {SERIES:,} (keeps up)", rate >= 0.95 * SERIES, "issue's figure on main: 11-17k"),
        Result(SECTION, f"{name}: peak backlog in memory", m["peak_buffered"], "points",
               f"<= max_buffered_points + one take ({MAX_BUFFERED:,} + {SERIES:,})",
               m["peak_buffered"] <= MAX_BUFFERED + 2 * SERIES, "issue's figure on main: 5M and growing"),
        Result(SECTION, f"{name}: peak lag (stats()['lag_s'])", m["peak_lag_s"], "s"),
        Result(SECTION, f"{name}: points sent to the spool (store slower than the offer)", m["spooled"], "points",
               note=f"dropped: {m['dropped']}"),
        Result(SECTION, f"{name}: peak RSS", m["peak_rss_mb"], "MB", note="issue's figure on main: 560 MB and growing"),
        Result(SECTION, f"{name}: close() time", m["close_s"], "s", "<= close_timeout (5 s) + one write",
               m["close_s"] <= 10, "issue's figure on main: 80 s"),
    ]
