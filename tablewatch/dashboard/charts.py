"""Plotly figures built from what :mod:`tablewatch.dashboard.queries` returns.

Nothing here knows Streamlit or the store. Every trace is named after the
series it draws (a task, a run, a feature, a route), so tests and people can
tell them apart; large traces use WebGL (``Scattergl``).

Figures carry their whole look (:data:`STYLE`, no template) and their
numbers as plain lists, under a fixed ``datarevision``: the page that shows a
figure draws it, then hands Plotly.js the same figure again (Streamlit does
after the first draw), and Plotly.js redraws from scratch unless nothing
differs, and a template or typed arrays (how Plotly.py sends NumPy arrays) always
differ. Drawn once instead of twice, the Tasks page's charts are ready ~0.3 s sooner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tablewatch.dashboard.queries import DistributionComparison
from tablewatch.extras import require

go = require("plotly.graph_objects", "dashboard", "the dashboard's charts")
qualitative = require("plotly.colors", "dashboard", "the dashboard's charts").qualitative

PALETTE = qualitative.Plotly
STATUS_COLOURS = {"success": "#2ca02c", "retry": "#ff7f0e", "failure": "#d62728", "running": "#1f77b4",
                  "queued": "#9467bd", "revoked": "#7f7f7f", "skipped": "#bcbd22"}
#: Above this many points a trace is drawn with WebGL (below it SVG draws faster, and
#: headless or GPU-less browsers render WebGL in software).
WEBGL_POINTS = 5_000
#: Up to this many attempts the Tasks page draws each as a dot by default; above it
#: only the p50/p95 bands (10,000 dots cost a headless, GPU-less Chromium about a second).
DOTS_BY_DEFAULT = 2_000
_HEIGHT = 360
#: Whether figures are built with Plotly's validation of every property (see :func:`_make`).
VALIDATE = False


#: The look of every figure (Streamlit's font and colours on white, light grid lines),
#: set on the figure itself rather than by a template (see the module's docstring).
STYLE = dict(font=dict(family='"Source Sans", "Source Sans Pro", sans-serif', size=13, color="#31333F"),
             title=dict(font=dict(size=16, weight="bold"), x=0, xref="paper"),
             paper_bgcolor="white", plot_bgcolor="white", colorway=PALETTE,
             hoverlabel=dict(bgcolor="white", font=dict(color="#31333F")))
#: No ``automargin``: margins that move with the labels cost Plotly.js a second layout pass
#: (the Tasks page's charts took twice as long to draw with it).
AXIS_STYLE = dict(gridcolor="#E6EAF1", zerolinecolor="#D5DAE5", linecolor="#D5DAE5")


def _layout(fig: go.Figure, title: str, y_title: str = "", x_title: str = "", height: int = _HEIGHT,
            **layout) -> go.Figure:
    # Titles as {"text": ...}: without validation nothing turns a plain string into one.
    axes = {"xaxis": dict(title=dict(text=x_title)), "yaxis": dict(title=dict(text=y_title))}
    for name, axis in axes.items():
        layout[name] = {**axis, **layout.get(name, {})}
    return _drawn_once(fig, title=dict(text=title), height=height, margin=dict(l=50, r=20, t=50, b=40),
                       hovermode="x unified",
                       legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0), **layout)


def _drawn_once(fig: go.Figure, **layout) -> go.Figure:
    """``fig`` in :data:`STYLE` with ``layout``, without a template and under a
    fixed ``datarevision``, so that Plotly.js given it twice draws it once (see
    the module's docstring). One update: each costs Plotly.py a few ms."""
    axes = {"xaxis", "yaxis"} | {name for name in layout if name.startswith(("xaxis", "yaxis"))}
    fig.update_layout(STYLE, **layout | {name: {**AXIS_STYLE, **layout.get(name, {})} for name in axes},
                      datarevision=1)
    fig.layout.template = None
    return fig


def _make(kind: type, *args, **props):
    """``kind(*args, **props)`` (a figure or a trace) without Plotly's check of
    every property unless :data:`VALIDATE`: building the Tasks page's figures
    took 0.3 s with it, a few ms without. The tests build every chart both ways
    and compare them. Numbers go as plain lists (see the module's docstring)."""
    return kind(*args, _validate=VALIDATE, **{name: _plain(value) for name, value in props.items()})


def _plain(value):
    """Numeric arrays, Series and frames as (nested) lists; anything else as is."""
    if isinstance(value, (np.ndarray, pd.Series, pd.DataFrame)):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.tolist()
    return value


def _scatter(n: int):
    return go.Scattergl if n > WEBGL_POINTS else go.Scatter


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def task_durations(points: pd.DataFrame, bands: pd.DataFrame, dots: bool = True) -> go.Figure:
    """Each task's p50 as a line and the p50..p95 band shaded, per time bucket,
    and (with ``dots``) its attempt durations as dots. The traces are made at
    once (adding 60 traces one by one validates the figure 60 times)."""
    if not dots:
        points = points.iloc[:0]
    tasks = list(dict.fromkeys([*points["task"], *bands["task"]]))
    markers = _scatter(len(points))  # thousands of SVG markers draw slower than WebGL
    bands_of, dots_of = dict(tuple(bands.groupby("task", sort=False))), dict(tuple(points.groupby("task", sort=False)))
    traces = []
    for i, task in enumerate(tasks):
        colour = _colour(i)
        band = bands_of.get(task)
        if band is not None:
            traces += [_make(go.Scatter, x=band["bucket"], y=band["p95"], name=f"{task} p95", legendgroup=task,
                                  mode="lines", line=dict(width=0.5, color=colour), showlegend=False),
                       _make(go.Scatter, x=band["bucket"], y=band["p50"], name=f"{task} p50", legendgroup=task,
                                  mode="lines", line=dict(width=2, color=colour), fill="tonexty",
                                  fillcolor=_transparent(colour))]
        attempts = dots_of.get(task)
        if attempts is not None:
            traces.append(_make(markers, x=attempts["ts"], y=attempts["value"], name=task, legendgroup=task,
                                  mode="markers", marker=dict(size=4, color=colour, opacity=0.5)))
    title = "Task duration (" + ("dots: attempts; " if dots else "") + "line: p50; band: p50–p95)"
    return _layout(_make(go.Figure, traces), title, "seconds")


def retries_and_failure_rate(retries: pd.DataFrame, failures: pd.DataFrame) -> go.Figure:
    """Retries per day stacked by task (left, from
    :func:`~tablewatch.dashboard.queries.retries_per_day`) and the share of
    attempts that failed per day (right, from
    :func:`~tablewatch.dashboard.queries.failure_rates`), side by side in one
    figure with one legend: a task has one colour in both, and clicking it shows
    or hides it in both. One figure rather than two: each costs the browser a
    layout and a draw of its own."""
    retries_of, failures_of = dict(tuple(retries.groupby("task"))), dict(tuple(failures.groupby("task")))
    traces = []
    for i, task in enumerate(sorted(retries_of.keys() | failures_of.keys())):
        if task in retries_of:
            group = retries_of[task]
            traces.append(_make(go.Bar, x=group["day"], y=group["retries"], name=task, legendgroup=task,
                                marker_color=_colour(i), customdata=group["calls"],
                                hovertemplate="%{y:.0f} retries in %{customdata} calls"))
        if task in failures_of:
            group = failures_of[task]
            traces.append(_make(go.Scatter, x=group["bucket"], y=group["failure_rate"], name=task, legendgroup=task,
                                showlegend=task not in retries_of, xaxis="x2", yaxis="y2", mode="lines+markers",
                                line=dict(color=_colour(i)), customdata=group[["failed", "attempts"]],
                                hovertemplate="%{y:.0%} (%{customdata[0]} of %{customdata[1]} attempts)"))
    few = len(retries) and retries.groupby("day")["retries"].sum().max() <= 10
    return _layout(_make(go.Figure, traces), "Retries per day, stacked by task (left); share of attempts failed per day "
                   "(right)", "retries", barmode="stack", xaxis=dict(domain=[0, 0.45]),
                   yaxis=dict(dtick=1) if few else {},
                   xaxis2=dict(domain=[0.55, 1], anchor="y2", type="date"),
                   yaxis2=dict(anchor="x2", tickformat=".0%", rangemode="tozero", title=dict(text="failed attempts")))


def gantt(frame: pd.DataFrame, run_id: str) -> go.Figure:
    """One bar per attempt of one pipeline run, a row per task, coloured by
    status; retries show as several bars on their task's row."""
    fig = _make(go.Figure)
    for status, group in frame.groupby("status", sort=False):
        duration_ms = (group["end"] - group["start"]).dt.total_seconds() * 1000
        fig.add_trace(_make(
            go.Bar,
            base=group["start"], x=duration_ms.clip(lower=1), y=group["task"], orientation="h", name=status,
            marker_color=STATUS_COLOURS.get(status, "#7f7f7f"),
            text=[f"#{a}" for a in group["attempt"]], textposition="inside",
            customdata=group[["attempt", "duration_s", "error"]],
            hovertemplate="%{y} attempt %{customdata[0]}: %{customdata[1]:.1f} s %{customdata[2]}<extra>" + status + "</extra>",
        ))
    fig.update_xaxes(type="date")
    # Task names are as long as they are: the only axis that makes room for its labels.
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(dict.fromkeys(frame["task"])),
                     automargin=True)
    fig.update_layout(barmode="overlay")
    height = max(220, 60 + 32 * frame["task"].nunique())
    fig = _layout(fig, f"Run {run_id}: every attempt (numbered), retries included", height=height)
    fig.update_layout(hovermode="closest")
    return fig


def training_curves(frame: pd.DataFrame, metric: str, x: str = "step") -> go.Figure:
    fig = _make(go.Figure)
    for i, (run, group) in enumerate(frame.groupby("run", sort=False)):
        fig.add_trace(_make(_scatter(len(group)), x=group[x], y=group["value"], name=run, mode="lines",
                                           line=dict(color=_colour(i))))
    return _layout(fig, metric, metric, "step" if x == "step" else "")


def system_metric(frame: pd.DataFrame, metric: str) -> go.Figure:
    return training_curves(frame, metric, x="ts")


def serving(frame: pd.DataFrame, column: str, title: str, y_title: str, percent: bool = False) -> go.Figure:
    """One line per route of ``column`` (``p95``, ``throughput``, ``error_rate``...)."""
    fig = _make(go.Figure)
    for i, (route, group) in enumerate(frame.groupby("route", sort=True)):
        fig.add_trace(_make(go.Scatter, x=group["bucket"], y=group[column], name=route, mode="lines",
                                 line=dict(color=_colour(i))))
    if percent:
        fig.update_yaxes(tickformat=".1%", rangemode="tozero")
    return _layout(fig, title, y_title)


def latency(frame: pd.DataFrame) -> go.Figure:
    """p50, p95 and p99 latency per route (one colour per route, dash per quantile)."""
    fig = _make(go.Figure)
    dashes = {"p50": "solid", "p95": "dash", "p99": "dot"}
    for i, (route, group) in enumerate(frame.groupby("route", sort=True)):
        for quantile, dash in dashes.items():
            fig.add_trace(_make(go.Scatter, x=group["bucket"], y=group[quantile], name=f"{route} {quantile}", mode="lines",
                                     line=dict(color=_colour(i), dash=dash), legendgroup=route))
    return _layout(fig, "Latency p50 / p95 / p99", "seconds")


def drift_scores(frame: pd.DataFrame) -> go.Figure:
    """Drift score per feature over time, with each feature's threshold as a
    dashed line and drifted windows marked."""
    fig = _make(go.Figure)
    for i, (feature, group) in enumerate(frame.groupby("feature", sort=True)):
        colour = _colour(i)
        fig.add_trace(_make(go.Scatter, x=group["window"], y=group["score"], name=feature, mode="lines+markers",
                                 line=dict(color=colour), marker=dict(size=[9 if d else 4 for d in group["drifted"]],
                                                                      symbol=["x" if d else "circle" for d in group["drifted"]]),
                                 customdata=group[["method", "count", "effect"]],
                                 hovertemplate="%{y:.3f} (%{customdata[0]}, %{customdata[1]} values, "
                                               "effect %{customdata[2]:.2f})"))
        fig.add_trace(_make(go.Scatter, x=[group["window"].min(), group["window"].max()], y=[group["threshold"].iloc[0]] * 2,
                                 name=f"{feature} threshold", mode="lines", line=dict(color=colour, dash="dash", width=1),
                                 legendgroup=feature, showlegend=False, hoverinfo="skip"))
    methods = ", ".join(sorted(set(frame["method"])))
    return _layout(fig, f"Drift per window and feature (dashed: threshold; ×: drifted) — {methods}", "score")


def distribution(comparison: DistributionComparison) -> go.Figure:
    """Reference vs current distribution of one feature, as shares."""
    labels = list(comparison.labels)
    fig = _make(go.Figure, [
        _make(go.Bar, x=labels, y=list(comparison.reference), name=f"reference ({comparison.reference_count})",
               marker_color="#7f7f7f", opacity=0.6),
        _make(go.Bar, x=labels, y=list(comparison.current), name=f"current ({comparison.current_count})",
               marker_color="#1f77b4", opacity=0.6),
    ])
    fig.update_layout(barmode="overlay" if comparison.kind == "numeric" else "group")
    fig.update_yaxes(tickformat=".0%")
    title = f"{comparison.feature}: reference vs current"
    result = comparison.result
    if result is not None:
        verdict = "drifted" if result.drifted else "no drift"
        title += f" ({result.method} {result.score:.3g}, threshold {result.threshold:g}, effect {result.effect:.2f}: {verdict})"
    return _layout(fig, title, "share of values", comparison.feature)


def sparkline(values: Sequence[float], name: str = "") -> go.Figure:
    fig = _make(go.Figure, _make(go.Scatter, y=list(values), mode="lines", name=name, line=dict(width=1.5, color="#1f77b4"),
                               fill="tozeroy", fillcolor="rgba(31,119,180,0.15)", hoverinfo="y"))
    return _drawn_once(fig, height=60, margin=dict(l=0, r=0, t=0, b=0), showlegend=False,
                       xaxis=dict(visible=False), yaxis=dict(visible=False))


def salt_buckets(hotspots: dict) -> go.Figure:
    points = hotspots["points"]
    mean = sum(points) / len(points) if points else 0
    fig = _make(go.Figure, _make(go.Bar, x=list(range(len(points))), y=points, name="points", marker_color="#1f77b4"))
    fig.add_hline(y=mean, line_dash="dash", annotation_text="mean", line_color="#7f7f7f")
    skew = hotspots.get("skew")
    title = "Points per salt bucket" + (f" (skew max/mean {skew:.2f})" if skew else "")
    return _layout(fig, title, "points", "salt bucket")


def _transparent(colour: str, alpha: float = 0.18) -> str:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
