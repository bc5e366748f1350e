"""The dashboard's pages: Streamlit scripts run by ``app.py``'s navigation
(not imported). Each reads widgets, calls the cached queries and renders."""
