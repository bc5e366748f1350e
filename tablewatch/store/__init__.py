"""The tablewatch store: the wide-column Table API, its backends, and the
time-series layer on top. Nothing here knows of Streamlit, Slack or Celery."""

from tablewatch.store.backends import BACKENDS, open_backend
from tablewatch.store.names import Series
from tablewatch.store.table import Backend, GCPolicy, Table
from tablewatch.store.runs import TrainingRun
from tablewatch.store.tasks import TaskRun
from tablewatch.store.timeseries import Store, StoreConfig, open_store

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
