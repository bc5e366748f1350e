"""tablewatch: a monitoring store for machine-learning systems, stored the way
Bigtable and HBase want time series."""

from tablewatch._lazy import lazy_attributes
from tablewatch.errors import (
    StoreError,
    StoreUnavailable,
    TablewatchError,
    ValidationError,
)

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

# The rest is imported when first used: `tablewatch --help` and `tablewatch push`
# never load numpy or pandas.
__getattr__, __dir__ = lazy_attributes(__name__, {
    "Collector": "tablewatch.collectors.sdk",
    "Series": "tablewatch.store.names",
    "Store": "tablewatch.store.timeseries",
    "TaskRun": "tablewatch.store.tasks",
    "TrainingRun": "tablewatch.store.runs",
    "open_store": "tablewatch.store.timeseries",
})
