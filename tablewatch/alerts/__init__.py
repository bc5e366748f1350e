"""Alerts: rules in YAML, detectors, the evaluation of rules against the store,
the engine, its notifiers (Slack), retrain actions, and notifications from code.

Importing this package does nothing: ``notify`` and ``alarm`` (the decorator for
a training function) are loaded on first use::

    from tablewatch.alerts import alarm, notify
"""

from __future__ import annotations

from typing import Any

__all__ = ["alarm", "notify"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("tablewatch.alerts.notifications"), name)
    raise AttributeError(f"module 'tablewatch.alerts' has no attribute {name!r}")
