"""Alerts: firing and resolved incidents, their notifications and actions,
silences (create and expire)."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import keep_in_url, query, run_page


def body(sel: Selection, start: float, end: float) -> None:
    keep_in_url(sel)
    firing = query("firing_alerts")
    if firing is None:
        st.info("Alerts are not set up in this installation: the alert engine stores its state in the store "
                "once `tablewatch alerts run rules.yaml` runs.")
        return


run_page("Alerts", body)
