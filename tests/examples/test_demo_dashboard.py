"""Every dashboard page renders the store `tablewatch demo` filled (Streamlit's
AppTest), on the queries the demo's printout suggests."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import tablewatch.dashboard

PAGES = {  # page: the query a newcomer follows from the demo's printout
    "overview": {},
    "tasks": {"pipeline": "nightly-etl", "task": "extract", "range": "7d"},
    "training": {"model": "ranker", "range": "30d"},
    "serving": {"range": "7d"},
    "drift": {"model": "ranker", "feature": "age", "range": "7d"},
    "alerts": {"range": "7d"},
    "store": {},
}


@pytest.mark.parametrize("page", PAGES)
def test_every_dashboard_page_renders_the_demo_store(demo, monkeypatch, page):
    cwd, _, _ = demo
    monkeypatch.setenv("TABLEWATCH_STORE", f"sqlite:///{cwd}/tablewatch-demo.db")
    at = AppTest.from_file(str(Path(tablewatch.dashboard.__file__).parent / "app.py"), default_timeout=60)
    at.run()
    if page != "overview":
        at.switch_page(f"views/{page}.py")
    at.query_params.update(PAGES[page])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "warning")
                     for e in getattr(at, kind))
    assert "No data" not in shown and not at.error, shown
    if page in ("tasks", "training", "serving", "drift"):
        assert at.get("plotly_chart"), f"{page}: no chart"
    if page == "alerts":
        firing = at.dataframe[0].value
        assert {"etl-slow", "ranker-feature-drift"} <= set(firing["rule"])
