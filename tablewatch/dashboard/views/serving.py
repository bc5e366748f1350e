"""Serving: latency p50/p95/p99, throughput and error rate per route and model."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard import charts
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import chart, empty_state, keep_in_url, pick, query, run_page

ALL_ROUTES = "(all routes)"


def body(sel: Selection, start: float, end: float) -> None:
    models = query("served_models")
    if not models:
        empty_state("No serving metrics yet. Add `TablewatchMiddleware(app, collector=collector, service=...)` "
                    "to your model server.")
        return
    left, right = st.columns(2)
    with left:
        model = pick("Model (service)", models, sel.model, key="serving.model")
    with right:
        route = pick("Route", query("routes_of", model), sel.route, key="serving.route", all_label=ALL_ROUTES)
    keep_in_url(sel.with_(model=model, route=route))
    stats = query("serving_stats", model, route, start, end)
    if not len(stats):
        st.info(f"No requests to {model} in this time range: pick a longer one.")
        return
    requests, errors = int(stats["requests"].sum()), int(stats["errors"].sum())
    a, b, c = st.columns(3)
    a.metric("Requests", f"{requests:,}")
    b.metric("Errors (5xx)", f"{errors:,}", f"{errors / requests:.2%}" if requests else None, delta_color="inverse")
    c.metric("Worst p99 (s)", f"{stats['p99'].max():.3f}")
    chart(charts.latency(stats), key="chart.latency")
    left, right = st.columns(2)
    with left:
        chart(charts.serving(stats, "throughput", "Throughput", "requests / s"), key="chart.throughput")
    with right:
        chart(charts.serving(stats, "error_rate", "Error rate (5xx)", "share of requests", percent=True),
              key="chart.error_rate")


run_page("Serving", body)
