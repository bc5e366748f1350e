"""Store: points per salt bucket and the skew, tables and their families,
retention, row counts."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard import charts, queries
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import chart, keep_in_url, query, run_page


def body(sel: Selection, start: float, end: float) -> None:
    keep_in_url(sel)
    info = query("store_info")
    hotspots = query("store_hotspots")
    a, b, c, d = st.columns(4)
    a.metric("Backend", info["backend"].replace("Backend", ""))
    b.metric("Salt buckets", info["salt_buckets"])
    c.metric("Time bucket", f"{info['bucket_seconds']} s")
    skew = hotspots["skew"]
    d.metric("Skew (max/mean)", f"{skew:.2f}" if skew else "–")
    chart(charts.salt_buckets(hotspots), key="chart.salt_buckets")
    st.subheader("Tables, families and retention")
    st.dataframe(queries.tables_frame(info), hide_index=True, width="stretch", key="table.tables")
    st.subheader("Series per metric")
    st.dataframe(query("series_counts"), hide_index=True, width="stretch", key="table.series")


run_page("Store", body)
