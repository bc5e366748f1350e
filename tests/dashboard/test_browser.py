"""The dashboard as a real server (``tablewatch dashboard``), driven in
Debian's Chromium by Playwright: pages opened by URL, Plotly charts read back
from the page, pickers changed, screenshots saved (to ``$TABLEWATCH_SCREENSHOTS``
when set, else the test's temporary directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import sync_playwright

from tests.dashboard.sample_data import FEATURES, MODEL, PIPELINE, TASKS

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(sample, tmp_path_factory):
    url, _ = sample
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard-server") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tablewatch.cli", "dashboard", "--store", url, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the dashboard did not start: {log.read_text()}")
        time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("TABLEWATCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Streamlit marks a keyed element's container with the class ``st-key-<key>``,
# characters other than letters, digits, _ and - becoming -.
TRACES_JS = """key => {
    const box = document.querySelector(`.st-key-${key.replace(/[^a-zA-Z0-9_-]/g, '-')}`);
    const plot = box && box.querySelector('.js-plotly-plot');
    return plot && plot.data && plot.querySelector('.main-svg') ? plot.data.map(t => t.name) : null;
}"""


def chart_traces(page, key: str, timeout_s: float = 30) -> list[str]:
    """The trace names of the Plotly chart with this key, once it is drawn."""
    page.wait_for_function(f"({TRACES_JS})({key!r}) !== null", timeout=timeout_s * 1000)
    return page.evaluate(TRACES_JS, key)


def wait_for_traces(page, key: str, predicate, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        traces = page.evaluate(TRACES_JS, key)
        if traces is not None and predicate(traces):
            return traces
        if time.monotonic() > deadline:
            raise AssertionError(f"chart {key} never matched; last traces {traces}")
        page.wait_for_timeout(200)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def params(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def wait_for_param(page, name: str, value: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while params(page).get(name) != [value]:
        if time.monotonic() > deadline:
            raise AssertionError(f"URL {page.url} never got {name}={value}")
        page.wait_for_timeout(100)


def test_tasks_page_in_chromium(server, page, screenshots):
    page.set_viewport_size({"width": 1400, "height": 1750})  # the whole page in the screenshot
    page.goto(f"{server}/tasks?pipeline={PIPELINE}&range=7d")
    durations = chart_traces(page, "chart.task_durations")
    assert {name for name in durations if " " not in name} == set(TASKS)
    assert {f"{task} p50" for task in TASKS} <= set(durations)
    assert sorted(chart_traces(page, "chart.retries_failures")) == sorted(TASKS * 2)  # bars and failure rates
    assert set(chart_traces(page, "chart.gantt")) <= {"success", "retry", "failure"}
    assert params(page)["pipeline"] == [PIPELINE] and params(page)["range"] == ["7d"]
    page.screenshot(path=str(screenshots / "tasks.png"), full_page=True)

    choose(page, "Task", "extract")
    after = wait_for_traces(page, "chart.task_durations", lambda t: {n for n in t if " " not in n} == {"extract"})
    assert after == ["extract p95", "extract p50", "extract"]
    # Drawn anew, not only given the new traces: charts keep one datarevision (see charts.py).
    page.wait_for_function("""() => document.querySelectorAll(
        '.st-key-chart-task_durations .scatterlayer .trace').length === 3""", timeout=15_000)
    wait_for_param(page, "task", "extract")
    assert params(page)["pipeline"] == [PIPELINE]


def test_drift_page_in_chromium(server, page, screenshots):
    page.set_viewport_size({"width": 1400, "height": 1320})
    page.goto(f"{server}/drift?model={MODEL}&feature=age")
    scores = chart_traces(page, "chart.drift_scores")
    assert {name for name in scores if "threshold" not in name} == set(FEATURES)
    assert {f"{f} threshold" for f in FEATURES} <= set(scores)
    distribution = chart_traces(page, "chart.distribution")
    assert [name.split(" ")[0] for name in distribution] == ["reference", "current"]
    title = page.evaluate("""() => document.querySelector('.st-key-chart-distribution .gtitle').textContent""")
    assert title.startswith("age: reference vs current")
    page.screenshot(path=str(screenshots / "drift.png"), full_page=True)

    choose(page, "Feature", "country")
    wait_for_param(page, "feature", "country")
    page.wait_for_function("""() => {
        const t = document.querySelector('.st-key-chart-distribution .gtitle');
        return t && t.textContent.startsWith('country:');
    }""", timeout=30_000)
    labels = page.evaluate("""() => document.querySelector('.st-key-chart-distribution .js-plotly-plot').data[1].x""")
    assert "br" in labels


def test_training_page_in_chromium(server, page, screenshots):
    page.set_viewport_size({"width": 1400, "height": 1520})
    page.goto(f"{server}/training?model={MODEL}&range=7d")
    curves = chart_traces(page, "chart.curve.train.loss")
    assert len(curves) == 3
    page.screenshot(path=str(screenshots / "training.png"), full_page=True)
