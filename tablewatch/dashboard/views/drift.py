"""Drift: drift score per feature over time with its threshold line; the
reference vs current distribution of a chosen feature, from the stored sketches."""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from tablewatch.dashboard import charts, queries
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import chart, empty_state, keep_in_url, pick, query, run_page


def body(sel: Selection, start: float, end: float) -> None:
    models = query("sketched_models")
    if not models:
        empty_state("No feature sketches yet. Call `collector.log_prediction(model, features, prediction)` "
                    "where your model serves.")
        return
    left, right = st.columns(2)
    with left:
        model = pick("Model", models, sel.model, key="drift.model")
    features = query("sketched_features", model)
    with right:
        feature = pick("Feature", features, sel.feature, key="drift.feature")
    keep_in_url(sel.with_(model=model, feature=feature))
    ref_start, ref_end = queries.reference_range(start, end)
    st.caption(f"Current: {_time(start)} to {_time(end)}; reference: the same length before it, from "
               f"{_time(ref_start)}. Scored as the alert rules score drift (method {queries.DRIFT_METHOD}, "
               f"effect at least {queries.DRIFT_MIN_EFFECT:g}, at least {queries.DRIFT_MIN_SAMPLES} values).")
    scores = query("drift_over_time", model, tuple(features), start, end)
    if len(scores):
        chart(charts.drift_scores(scores), key="chart.drift_scores")
        latest = scores.sort_values("window").groupby("feature").tail(1)
        drifted = latest[latest["drifted"]]["feature"].tolist()
        if drifted:
            st.warning(f"Drifted in the latest window: {', '.join(drifted)}")
    else:
        st.info("Not enough windows in this range to compare: pick a longer one.")
    if feature:
        comparison = query("compare_distributions", model, feature, start, end)
        chart(charts.distribution(comparison), key="chart.distribution")


def _time(seconds: float) -> str:
    return f"{datetime.fromtimestamp(seconds, tz=timezone.utc):%Y-%m-%d %H:%M} UTC"


run_page("Drift", body)
