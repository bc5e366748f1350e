"""Alerts: firing and resolved incidents, their notifications and actions
(who pressed Retrain, and when), silences (create and expire)."""

from __future__ import annotations

import streamlit as st

from tablewatch.dashboard import queries
from tablewatch.dashboard.selection import Selection
from tablewatch.dashboard.widgets import clear_cache, keep_in_url, query, run_page, store, widget_key
from tablewatch.errors import TablewatchError

LINK = st.column_config.LinkColumn("view", display_text="open")
HIDDEN = ["incident_id"]


def body(sel: Selection, start: float, end: float) -> None:
    if not query("alerts_set_up"):
        keep_in_url(sel)
        st.info("No alert engine has written to this store yet. Write rules (`rules.yaml`), check them with "
                "`tablewatch alerts check rules.yaml`, and run the alert runner on this store: firing and "
                "resolved incidents, Slack notifications, Retrain clicks and silences then show here.")
        return
    st.subheader("Firing now")
    firing = query("firing_alerts")
    if len(firing):
        st.dataframe(firing.drop(columns=["resolved_at"]), hide_index=True, width="stretch", key="table.firing",
                     column_config={"link": LINK})
    else:
        st.success("No alert is firing.")

    st.subheader("Incidents in this time range")
    history = query("incidents", start, end)
    incident = None
    if len(history):
        st.dataframe(history, hide_index=True, width="stretch", key="table.incidents", column_config={"link": LINK})
        labels = {row.incident_id: f"{row.rule} · {row.labels} · {row.state} · {row.active_at:%Y-%m-%d %H:%M}"
                  for row in history.itertuples()}
        ids = list(labels)
        incident = st.selectbox("Incident", ids, index=ids.index(sel.incident) if sel.incident in ids else 0,
                                format_func=labels.get, key=widget_key("alerts.incident"))
    else:
        st.caption("No incident in this time range.")
    keep_in_url(sel.with_(incident=incident))
    row = history[history["incident_id"] == incident].iloc[0] if incident else None
    if row is not None:
        _incident(row, incident)
    _silences(row)


def _incident(row, incident: str) -> None:
    st.markdown(f"**{row.rule}** ({row.severity}, {row.state}): {row.summary}")
    if row.link:
        st.markdown(f"[Open the chart behind this alert]({row.link})")
    left, right = st.columns(2)
    with left:
        st.markdown("**Notifications**")
        notes = query("incident_notifications", incident)
        if len(notes):
            st.dataframe(notes, hide_index=True, width="stretch", key="table.notifications")
        else:
            st.caption("No notification.")
    with right:
        st.markdown("**Actions** (Retrain, Snooze, Acknowledge clicks)")
        clicks = query("incident_actions", incident)
        if len(clicks):
            st.dataframe(clicks.drop(columns=HIDDEN), hide_index=True, width="stretch", key="table.actions")
        else:
            st.caption("Nobody clicked a button for this incident.")


def _silences(row) -> None:
    st.subheader("Silences")
    if created := st.session_state.pop("alerts.created", None):
        st.success(f"Silence {created} created.")
    include_expired = st.checkbox("Show expired silences", key="alerts.expired")
    current = query("silences", include_expired)
    if len(current):
        st.dataframe(current, hide_index=True, width="stretch", key="table.silences")
    else:
        st.caption("No silence.")
    suggested = "" if row is None else ", ".join([f"rule={row.rule}", *(p for p in row.labels.split(", ") if p)])
    with st.form("alerts.new_silence", clear_on_submit=False):
        st.markdown("**New silence**: alerts whose labels match every `label=value` are not notified.")
        matchers = st.text_input("Matchers", suggested, placeholder="rule=etl-slow, pipeline=nightly-etl")
        left, middle, right = st.columns(3)
        duration = left.selectbox("For", list(queries.SILENCE_DURATIONS), index=1)
        created_by = middle.text_input("Created by")
        comment = right.text_input("Comment")
        if st.form_submit_button("Create silence"):
            try:
                silence = queries.add_silence(store(), matchers, duration, created_by, comment)
            except TablewatchError as error:
                st.error(str(error))
            else:
                clear_cache()
                st.session_state["alerts.created"] = silence.id
                st.rerun()
    active = current[current["active"]] if len(current) else current
    if len(active):
        left, right = st.columns([3, 1])
        chosen = left.selectbox("Expire a silence", list(active["id"]), key="alerts.expire_id",
                                format_func=lambda i: f"{i} · {active.set_index('id').loc[i, 'matchers']}")
        right.write("")
        if right.button("Expire now", key="alerts.expire"):
            queries.expire_silence(store(), chosen)
            clear_cache()
            st.rerun()


run_page("Alerts", body)
