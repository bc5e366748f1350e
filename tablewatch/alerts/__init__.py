"""Alerts: rules in YAML, detectors, the evaluation of rules against the store,
the engine and its notifiers."""
