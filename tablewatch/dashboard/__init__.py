"""The tablewatch dashboard: Streamlit pages over a store.

``selection.py`` (the URL's query parameters), ``queries.py`` (reads from the
store) and ``charts.py`` (Plotly figures) know nothing of Streamlit and are
tested without it; ``app.py`` and ``views/`` only read widgets, call them and
render. Run it with ``tablewatch dashboard --store URL``.
"""
