"""The tablewatch store: the wide-column Table API, its backends, and the
time-series layer on top. Nothing here knows of Streamlit, Slack or Celery.
Names are imported when first used (``tablewatch.store.names`` stays light)."""

from tablewatch._lazy import lazy_attributes

__all__ = [
    "BACKENDS",
    "Backend",
    "GCPolicy",
    "Series",
    "Store",
    "StoreConfig",
    "Table",
    "TaskRun",
    "TrainingRun",
    "open_backend",
    "open_store",
]

__getattr__, __dir__ = lazy_attributes(__name__, {
    "BACKENDS": "tablewatch.store.backends",
    "open_backend": "tablewatch.store.backends",
    "Series": "tablewatch.store.names",
    "Backend": "tablewatch.store.table",
    "GCPolicy": "tablewatch.store.table",
    "Table": "tablewatch.store.table",
    "TrainingRun": "tablewatch.store.runs",
    "TaskRun": "tablewatch.store.tasks",
    "Store": "tablewatch.store.timeseries",
    "StoreConfig": "tablewatch.store.timeseries",
    "open_store": "tablewatch.store.timeseries",
})
