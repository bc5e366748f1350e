"""The demo's Retrain: the example rules' `retrain` action, run as the demo's
server runs it (its environment, from another folder), records a training run
of the alert's model through the Collector and says so."""

from __future__ import annotations

from pathlib import Path

from tablewatch import open_store
from tablewatch.alerts.actions import run_action
from tablewatch.alerts.rules import load_rules
from tablewatch.demo import service_environment

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def test_the_example_retrain_action_records_a_training_run(tmp_path, monkeypatch):
    store_url = f"sqlite:///{tmp_path}/demo.db"
    rules = load_rules(RULES)
    (rule,) = [r for r in rules.rules if r.name == "ranker-feature-drift"]
    spec = rules.actions[rule.action]
    monkeypatch.chdir(tmp_path)  # not the repository: the demo may run anywhere
    for name, value in service_environment(store_url, str(RULES)).items():
        monkeypatch.setenv(name, value)
    context = {"rule": rule.name, "incident_id": "abc-123", "labels": {"model": "ranker", "feature": "age"},
               "user": "U42", "action": rule.action}
    outcome = run_action(spec, context)
    assert outcome.ok, outcome.detail
    with open_store(store_url, create=False) as store:
        (run,) = store.read_training_runs("ranker")
    assert run.status == "success" and run.metrics["val.accuracy"] > 0.5
    assert run.params["reason"] == "ranker-feature-drift (abc-123), asked by U42"
    assert f"retrained ranker: run {run.run_id} success" in outcome.detail
