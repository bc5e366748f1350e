"""The dashboard on 10 million points: server-side queries and Chromium.

An embedded store gets 10M points over 30 days in many series (written with
``write_points_many``): 20 tasks of a pipeline (50k attempts each), 20 training
runs (two metrics of 100k steps each), 10 serving series (500k requests each).
Then:

- the query behind each chart of the Tasks and Training pages (what the page
  asks the store for, downsampled on the server to 2,000 points per trace), next
  to reading the same points without downsampling (what the browser would be
  sent otherwise);
- ``tablewatch dashboard`` started as a real server, and Debian's Chromium
  (Playwright) timed from navigation to every Plotly chart of the page drawn,
  for the Tasks and Training pages (each navigation with its own time range,
  so the server's query cache never answers), with when the page's script ran
  on the server (what is left is loading the page and drawing). The Tasks page
  draws its 1M attempts as p50/p95 bands; dots only behind its toggle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Result, best_of, free_port, wait_ready
from tablewatch.dashboard import queries
from tablewatch.store import open_store

SECTION = "dashboard"
DAY = 86_400
DAYS = 30
PIPELINE, TASKS = "bench-etl", [f"task-{i:02d}" for i in range(20)]
MODEL, RUNS = "bench-model", [f"run-{i:02d}" for i in range(20)]
TASK_POINTS, STEPS, REQUESTS = 50_000, 100_000, 500_000
ROUTES = [f"/route-{i}" for i in range(10)]
CHROMIUM = "/usr/bin/chromium"
NAVIGATIONS = 3


def fill(store, now: float) -> int:
    """10M points over the 30 days before ``now``; the number written."""
    rng = np.random.default_rng(1)
    start = now - DAYS * DAY
    written = 0
    batches = []
    for i, task in enumerate(TASKS):
        ts = np.sort(rng.uniform(start, now, TASK_POINTS))
        batches.append({"metric": "task.duration_s", "tags": {"pipeline": PIPELINE, "task": task}, "ts": ts,
                        "values": rng.lognormal(np.log(10 + i), 0.3, TASK_POINTS)})
    written += store.write_points_many(batches)
    task_runs = []
    for day in range(DAYS):  # one run of the pipeline a day, every task once, a retry now and then
        for i, task in enumerate(TASKS):
            at = start + day * DAY + i * 60
            retried = (day + i) % 7 == 0
            task_runs += [{"pipeline": PIPELINE, "task": task, "run_id": f"day-{day}", "attempt": attempt,
                           "status": "retry" if attempt < 1 + retried else "success", "started_at": at + 30 * attempt,
                           "ended_at": at + 30 * attempt + 20, "error_type": "TimeoutError" if attempt < 1 + retried else None}
                          for attempt in range(1, 2 + retried)]
    store.write_task_runs(task_runs)
    for i, run in enumerate(RUNS):
        steps = np.arange(STEPS)
        run_start = start + i * DAY
        ts = run_start + steps * 6.0
        tags = {"run": run, "run_name": MODEL}
        loss = np.exp(-steps / (10_000 * (1 + i % 5))) + rng.normal(0, 0.01, STEPS)
        written += store.write_points_many([
            {"metric": "train.loss", "tags": tags, "ts": ts, "values": loss, "steps": steps},
            {"metric": "train.acc", "tags": tags, "ts": ts, "values": 1 - loss / 2, "steps": steps},
        ])
        store.write_training_run({"name": MODEL, "run_id": run, "status": "success", "started_at": run_start,
                                  "ended_at": ts[-1], "params": {"lr": 10.0 ** -(1 + i % 4), "seed": i},
                                  "metrics": {"train.loss": float(loss[-1])}})
    for route in ROUTES:
        ts = np.sort(rng.uniform(start, now, REQUESTS))
        written += store.write_points_many([{"metric": "serve.latency_s", "tags": {
            "service": MODEL, "route": route, "method": "POST", "status": "2xx"}, "ts": ts,
            "values": rng.lognormal(-3, 0.5, REQUESTS)}])
    return written


def server_side(store, now: float) -> list[Result]:
    start, end = now - DAYS * DAY, now + 1
    default_runs = RUNS[-5:]  # the page shows the five newest runs by default
    charts = {
        "Tasks: durations and p50/p95 bands, 20 tasks": (
            lambda: queries.task_durations(store, PIPELINE, TASKS, start, end),
            lambda: [store.read_points("task.duration_s", {"pipeline": PIPELINE, "task": t}, start, end) for t in TASKS],
            len(TASKS) * TASK_POINTS),
        "Training: train.loss of 5 runs": (
            lambda: queries.training_curves(store, "train.loss", default_runs),
            lambda: [store.read_points("train.loss", {"run": r, "run_name": MODEL}) for r in default_runs],
            len(default_runs) * STEPS),
        "Training: train.loss of 20 runs": (
            lambda: queries.training_curves(store, "train.loss", RUNS),
            lambda: [store.read_points("train.loss", {"run": r, "run_name": MODEL}) for r in RUNS],
            len(RUNS) * STEPS),
    }
    results = []
    for name, (chart_query, raw_query, raw_points) in charts.items():
        shown = chart_query()
        shown_points = sum(len(f) for f in shown) if isinstance(shown, tuple) else len(shown)
        ms = 1000 * best_of(3, chart_query)
        raw_ms = 1000 * best_of(2, raw_query)
        results += [
            Result(SECTION, f"{name}: query", ms, "ms", "< 200 ms", ms < 200,
                   f"{raw_points:,} points read, {shown_points:,} sent"),
            Result(SECTION, f"{name}: same points, no downsampling", raw_ms, "ms",
                   note=f"{raw_points:,} points sent"),
        ]
    return results


# Records, from the navigation's start, when the page's script started and last stopped
# running on the server (Streamlit's data-test-script-state), to tell server time from drawing.
SCRIPT_STATE_JS = """(() => {
    const times = window.__scriptRun = {};
    new MutationObserver(() => {
        const state = document.querySelector('.stApp')?.getAttribute('data-test-script-state');
        if (state === 'running' && times.started === undefined) times.started = performance.now();
        if (state === 'notRunning' && times.started !== undefined) times.finished = performance.now();
    }).observe(document, {subtree: true, childList: true, attributes: true});
})();"""

CHARTS_DRAWN_JS = """n => {
    const app = document.querySelector('.stApp');
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && plots.length >= n && plots.every(p => p.data && p.querySelector('.main-svg'));
}"""


def browser(url: str, now: float) -> list[Result]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tablewatch.cli", "dashboard", "--store", url, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, path="/_stcore/health")
        pages = {
            "Tasks page, 20 tasks (3 charts)": (f"/tasks?pipeline={PIPELINE}", 3),
            "Training page, 5 runs (2 charts)": (f"/training?model={MODEL}", 2),
        }
        results = []
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(SCRIPT_STATE_JS)
            page.goto(f"{base}/store")  # the first page load also loads Streamlit's and Plotly's JavaScript
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
            for name, (path, charts) in pages.items():
                times, script_runs = [], []
                for i in range(NAVIGATIONS):
                    start = now - DAYS * DAY - i  # a range of its own: no cached query answers
                    started = time.perf_counter()
                    page.goto(f"{base}{path}&start={start:.0f}&end={now + 1 + i:.0f}")
                    try:
                        page.wait_for_function(f"({CHARTS_DRAWN_JS})({charts})", timeout=60_000)
                    except PlaywrightTimeout:
                        page.screenshot(path=f"{tempfile.gettempdir()}/dashboard-bench-timeout.png")
                        raise RuntimeError(f"{path}: the charts were not drawn within 60 s") from None
                    times.append(time.perf_counter() - started)
                    script_runs.append(page.evaluate("() => window.__scriptRun"))
                best = min(times)
                run = script_runs[times.index(best)]
                results.append(Result(SECTION, f"{name}: navigation to charts drawn, Chromium", best, "s", "< 2 s",
                                      best < 2, f"best of {NAVIGATIONS}, median {sorted(times)[len(times) // 2]:.2f} s; "
                                      f"its script ran from {run['started'] / 1000:.2f} to {run['finished'] / 1000:.2f} s"))
            results.append(_raw_figure_in_chromium(page, url))
            chromium.close()
        return results
    finally:
        server.terminate()
        server.wait(timeout=10)


def _raw_figure_in_chromium(page, url: str) -> Result:
    """What a user would do instead: the same five runs' train.loss, every
    point, in one Plotly figure (WebGL), opened in the same Chromium."""
    import plotly.graph_objects as go

    with open_store(url) as store:
        fig = go.Figure([go.Scattergl(x=frame["step"], y=frame["value"], mode="lines", name=run)
                         for run in RUNS[-5:]
                         for frame in [store.read_points("train.loss", {"run": run, "run_name": MODEL})]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.html"
        fig.write_html(path, include_plotlyjs=True)
        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                               " return p && p.querySelector('.main-svg') && p._fullLayout; }", timeout=120_000)
        elapsed = time.perf_counter() - started
    return Result(SECTION, "same 5 runs' train.loss, every point in one Plotly figure, Chromium", elapsed, "s",
                  note=f"{len(RUNS[-5:]) * STEPS:,} points, no Streamlit: what the downsampling saves")


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'dashboard.db'}"
        now = time.time()
        with open_store(url) as store:
            started = time.perf_counter()
            points = fill(store, now)
            elapsed = time.perf_counter() - started
            results = [Result(SECTION, f"fill: {points:,} points, 30 days, write_points_many", points / elapsed,
                              "points/s")]
            results += server_side(store, now)
        if os.path.exists(CHROMIUM):
            results += browser(url, now)
        else:
            results.append(Result(SECTION, "Chromium timings skipped: /usr/bin/chromium is missing", 0, "s"))
        results.append(Result(SECTION, "load average of this machine at the end (2 cores)", os.getloadavg()[0], "",
                              note="the figures above grow with it"))
        return results
