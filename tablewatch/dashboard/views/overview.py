"""Overview: firing alerts, recent failures, key figures per pipeline and model
with sparklines, and when the last data arrived."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import keep_in_url, query, run_page


def body(sel: Selection, start: float, end: float) -> None:
    keep_in_url(sel)
    fresh = query("freshness")
    columns = st.columns(4)
    for column, (label, when) in zip(columns, (("Last point", fresh.points), ("Last task run", fresh.tasks),
                                              ("Last training run", fresh.training), ("Last sketch", fresh.sketches))):
        column.metric(label, _ago(when, end), help=f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else None)

    st.subheader("Firing alerts")
    firing = query("firing_alerts")
    if firing is None:
        st.caption("No alert engine has written to this store yet (`tablewatch alerts run rules.yaml`).")
    elif len(firing):
        st.dataframe(firing[["state", "severity", "rule", "labels", "summary", "fired_at", "acknowledged_by", "link"]],
                     hide_index=True, width="stretch", key="table.firing",
                     column_config={"link": st.column_config.LinkColumn("view", display_text="open")})
        st.page_link("views/alerts.py", label="All incidents, notifications and silences", icon=":material/notifications:")
    else:
        st.success("No alert is firing.")

    st.subheader("Pipelines")
    pipelines = query("pipeline_summaries", start, end)
    if pipelines:
        st.dataframe(pd.DataFrame([{
            "pipeline": p.pipeline, "tasks": p.tasks, "attempts": p.attempts, "failures": p.failures,
            "retries": p.retries, "failure rate": p.failure_rate, "p95 duration (s)": p.p95_duration_s,
            "duration trend": list(p.sparkline), "last run": p.last_run,
            "link": f"/tasks?pipeline={p.pipeline}",
        } for p in pipelines]), hide_index=True, width="stretch", key="table.pipelines", column_config={
            "duration trend": st.column_config.LineChartColumn("mean duration"),
            "failure rate": st.column_config.ProgressColumn("failure rate", format="percent", min_value=0, max_value=1),
            "link": st.column_config.LinkColumn("view", display_text="tasks"),
        })
    else:
        st.caption("No task runs yet.")
    st.subheader("Models")
    models = query("model_summaries", start, end)
    if models:
        st.dataframe(pd.DataFrame([{
            "model": m.model, "kind": m.kind, "figure": m.figure, "value": m.value, "trend": list(m.sparkline),
            "detail": m.detail,
            "link": f"/{'serving' if m.kind == 'serving' else 'training'}?model={m.model}",
        } for m in models]), hide_index=True, width="stretch", key="table.models", column_config={
            "trend": st.column_config.LineChartColumn("trend"),
            "link": st.column_config.LinkColumn("view", display_text="open"),
        })
    else:
        st.caption("No models served or trained yet.")

    st.subheader("Recent failures")
    failures = query("recent_failures", start, end)
    if len(failures):
        st.dataframe(failures, hide_index=True, width="stretch", key="table.failures")
    else:
        st.caption("No failed task in this time range.")


def _ago(when: datetime | None, now: float) -> str:
    if when is None:
        return "never"
    seconds = max(0.0, now - when.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


run_page("Overview", body)
