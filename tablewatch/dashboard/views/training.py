"""Training: loss/accuracy curves by step with several runs overlaid, params
and final metrics side by side, system metrics."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard import charts, queries
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import chart, empty_state, keep_in_url, pick, query, run_page, widget_key

MAX_DEFAULT_RUNS = 5


def body(sel: Selection, start: float, end: float) -> None:
    names = query("training_names", start, end)
    if sel.model and sel.model not in names and sel.model in query("training_names"):
        names = [sel.model, *names]  # a link's model stays pickable when it has no run in the range
    if not names:
        empty_state("No training runs in this time range. Log them with `with collector.run(name): ...`.")
        return
    left, right = st.columns([1, 3])
    with left:
        name = pick("Model / experiment", names, sel.model, key="training.model")
    runs = query("training_runs", name, start, end) or query("training_runs", name)
    by_id = {run.run_id: run for run in runs}
    default = [r for r in sel.runs if r in by_id] or list(by_id)[:MAX_DEFAULT_RUNS]
    with right:
        chosen = st.multiselect("Runs", list(by_id), default=default, key=widget_key("training.runs"),
                                format_func=lambda r: f"{r} ({by_id[r].started_at:%m-%d %H:%M}, {by_id[r].status})")
    keep_in_url(sel.with_(model=name, runs=tuple(chosen)))
    if not chosen:
        st.info("Pick one or more runs.")
        return
    metrics, system = query("metrics_of_runs", tuple(chosen))
    if metrics:
        preferred = [m for m in metrics if "loss" in m] + [m for m in metrics if "loss" not in m]
        shown = st.multiselect("Metrics", metrics, default=preferred[:2], key="training.metrics")
        _curves(shown, tuple(chosen), charts.training_curves, "chart.curve")
    else:
        st.caption("These runs logged no metrics.")
    st.subheader("Params and final metrics")
    st.dataframe(queries.compare_runs([by_id[r] for r in chosen]), width="stretch", key="table.compare")
    if system:
        st.subheader("System metrics")
        _curves(system, tuple(chosen), charts.system_metric, "chart.system")


def _curves(metrics: list[str], runs: tuple[str, ...], build, key: str) -> None:
    """One chart per metric, two per row, every run overlaid."""
    columns = st.columns(2)
    for i, metric in enumerate(metrics):
        with columns[i % 2]:
            frame = query("training_curves", metric, runs)
            chart(build(frame, metric), key=f"{key}.{metric}")


run_page("Training", body)
