"""Collectors: how metrics get into a tablewatch store.

- :class:`Collector` (``tablewatch.Collector``) — the SDK: buffered ``log()``,
  background flush, disk spool, training runs, task runs and retries.
- :mod:`~tablewatch.collectors.spool` — the disk spool format and its replay.
- :mod:`~tablewatch.collectors.training` — :class:`Run` and system metrics.
- :mod:`~tablewatch.collectors.tracking` — :class:`TaskTimer` and ``track``.

Importing this package starts nothing: a collector's thread and its ``atexit``
hook exist only once a :class:`Collector` is created.
"""

from tablewatch._lazy import lazy_attributes

__all__ = ["Collector", "CollectorClosed", "Run", "TaskAttempt", "TaskTimer"]

# Imported when first used: `tablewatch push` loads push.py only.
__getattr__, __dir__ = lazy_attributes(__name__, {
    "Collector": "tablewatch.collectors.sdk",
    "CollectorClosed": "tablewatch.collectors.sdk",
    "TaskAttempt": "tablewatch.collectors.tracking",
    "TaskTimer": "tablewatch.collectors.tracking",
    "Run": "tablewatch.collectors.training",
})
