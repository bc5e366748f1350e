"""Optional dependencies and the extras that install them.

The core install (``pip install tablewatch``) is the Collector and the
embedded SQLite store. The rest comes with extras: ``bigtable``, ``hbase``,
``server``, ``dashboard``, ``alerts``, ``celery``, or ``all``. Code that needs
an optional library imports it through :func:`require`, so that a missing
one says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tablewatch.errors import MissingDependency


def install_hint(extra: str) -> str:
    return f"pip install 'tablewatch[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module``, imported; MissingDependency naming the extra when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise MissingDependency(
            f"{purpose} needs {missing!r}, which is not installed: {install_hint(extra)}"
        ) from e
