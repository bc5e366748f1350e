"""tablewatch: a monitoring store for machine-learning systems, stored the way
Bigtable and HBase want time series."""

from tablewatch.errors import (
    StoreError,
    StoreUnavailable,
    TablewatchError,
    ValidationError,
)
from tablewatch.store import Series, Store, TaskRun, TrainingRun, open_store
from tablewatch.collectors import Collector

__version__ = "0.1.0"

__all__ = [
    "Collector",
    "Series",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TablewatchError",
    "TaskRun",
    "TrainingRun",
    "ValidationError",
    "open_store",
]
