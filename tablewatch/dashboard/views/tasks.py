"""Tasks: duration over time per task with p50/p95 bands, retries per day and
failure rate (one figure), a Gantt chart of one pipeline run, failed attempts."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard import charts, queries
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import chart, empty_state, keep_in_url, pick, query, run_page, widget_key

ALL_TASKS = "(all tasks)"


def body(sel: Selection, start: float, end: float) -> None:
    pipelines = query("pipelines")
    if not pipelines:
        empty_state("No task runs yet. Track tasks with `collector.task(pipeline, task)`, "
                    "`@collector.track(...)` or the Celery integration.")
        return
    left, right, third = st.columns(3)
    with left:
        pipeline = pick("Pipeline", pipelines, sel.pipeline, key="tasks.pipeline")
    all_tasks = query("tasks_of", pipeline)
    with right:
        task = pick("Task", all_tasks, sel.task, key="tasks.task", all_label=ALL_TASKS)
    tasks = [task] if task else all_tasks
    runs = query("task_runs", pipeline, task, start, end)
    pipeline_runs = queries.pipeline_runs(runs)
    with third:
        run_ids = [r.run_id for r in pipeline_runs]
        labels = {r.run_id: r.label for r in pipeline_runs}
        current_run = sel.runs[0] if sel.runs else None
        run_id = (st.selectbox("Pipeline run (Gantt)", run_ids, index=run_ids.index(current_run) if current_run in run_ids else 0,
                               format_func=labels.get, key=widget_key("tasks.run")) if run_ids else None)
    keep_in_url(sel.with_(pipeline=pipeline, task=task, runs=(run_id,) if run_id else ()))

    if not runs and not len(query("task_durations", pipeline, tuple(tasks), start, end)[0]):
        st.info(f"No runs of {pipeline} {task or ''} in this time range: pick a longer one.")
        return
    # The durations chart goes on top but is made last: its query is the slowest, and the
    # browser draws the charts below meanwhile.
    top = st.container()
    retries = query("retries_per_day", pipeline, tuple(tasks), start, end)
    chart(charts.retries_and_failure_rate(retries, queries.failure_rates(runs)), key="chart.retries_failures")
    if run_id:
        all_tasks_runs = runs if task is None else query("task_runs", pipeline, None, start, end)
        chart(charts.gantt(queries.gantt_frame(all_tasks_runs, run_id), run_id), key="chart.gantt")
    with top:
        points, bands = query("task_durations", pipeline, tuple(tasks), start, end)
        # No key: the default follows the number of attempts, and a new default starts the toggle again.
        dots = st.toggle("Every attempt as a dot", value=len(points) <= charts.DOTS_BY_DEFAULT,
                         help="Many dots take the browser a while to draw; the bands summarise them.")
        chart(charts.task_durations(points, bands, dots), key="chart.task_durations")
    st.subheader("Failed attempts")
    failed = queries.failed_attempts(runs)
    if len(failed):
        st.dataframe(failed, hide_index=True, width="stretch", key="table.failed")
    else:
        st.caption("No failed attempts in this time range.")


run_page("Tasks", body)
