"""Rule files: the schema, durations, and errors that name file:line, rule and field."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tablewatch.alerts.rules import (
    DriftRule,
    LastRuns,
    RegressionRule,
    TaskEventRule,
    ThresholdRule,
    load_rules,
    parse_duration,
    parse_rules,
)
from tablewatch.errors import RuleError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def error_of(text: str) -> str:
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="rules.yaml")
    return str(caught.value)


def test_the_example_file_validates_and_covers_every_kind():
    rules = load_rules(EXAMPLE)
    assert {rule.kind for rule in rules.rules} == {"threshold", "regression", "drift", "absence", "new_data", "task_event"}
    assert set(rules.actions) == {"retrain", "retrain-webhook", "retrain-celery"}
    assert rules.actions["retrain"].timeout == 7200
    assert rules.slack.mentions["critical"] == ["<!subteam^S012345>", "@oncall"]
    assert rules.silences[0].ends_at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    slow = rules.rule("etl-slow")
    assert isinstance(slow, RegressionRule) and slow.window == 86400 and slow.baseline.windows == 7
    assert slow.cron == "30 6 * * *"
    done = rules.rule("training-done")
    assert isinstance(done, TaskEventRule) and done.on == ["success", "failure"]  # finished/failed are synonyms
    latency = rules.rule("serving-latency-p99")
    assert isinstance(latency, ThresholdRule) and latency.for_ == 600 and latency.keep_firing_for == 900
    assert latency.tags == {"service": "ranker", "status": ["2xx", "4xx"]}
    drift = rules.rule("ranker-dataset-drift")
    assert isinstance(drift, DriftRule) and drift.drift_share == 0.5 and drift.reference.kind == "training_run"


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("7d", 604800.0),
    ("2w", 1209600.0), ("1h30m", 5400.0), ("250ms", 0.25), ("120", 120.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "5x", "-1", "1h 30", "", True, None, "h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_defaults_of_a_minimal_rule():
    rule = parse_rules("rules:\n  - {name: a, kind: threshold, metric: m, op: '>', value: 1}\n").rules[0]
    assert (rule.severity, rule.for_, rule.keep_firing_for, rule.repeat_interval) == ("warning", 0, 0, 14400)
    assert (rule.window, rule.aggregate, rule.per_series, rule.labels) == (3600, "mean", True, {})


def test_a_bad_duration_names_file_line_rule_and_field():
    text = """rules:
  - name: ok
    kind: threshold
    metric: m
    op: ">"
    value: 1
  - name: etl-slow
    kind: regression
    source: task_runs
    pipeline: nightly-etl
    window: abc
    threshold: 0.5
"""
    assert error_of(text) == "rules.yaml:11: rules[1] ('etl-slow').window: must be a duration like 30m, 1h, 7d (got 'abc')"


@pytest.mark.parametrize("rule, expected", [
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, colour: red}",
     "rules.yaml:2: rules[0] ('a').colour: unknown field (known: action, aggregate,"),
    ("{name: a, kind: thresh}", "rules.yaml:2: rules[0] ('a').kind: must be one of 'threshold', 'regression'"),
    ("{name: a}", "rules.yaml:2: rules[0] ('a').kind: is required"),
    ("{kind: threshold, metric: m, op: '>', value: 1}", "rules.yaml:2: rules[0].name: is required"),
    ("{name: a, kind: threshold, metric: m, value: 1}", "rules.yaml:2: rules[0] ('a').op: is required"),
    ("{name: a, kind: threshold, metric: m, op: '=>', value: 1}", "rules.yaml:2: rules[0] ('a').op: must be one of '>', '>=', '<' or '<=' (got '=>')"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, aggregate: p42}", "rules.yaml:2: rules[0] ('a').aggregate: must be one of"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, severity: fatal}", "rules.yaml:2: rules[0] ('a').severity: must be one of 'info', 'warning' or 'critical' (got 'fatal')"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, cron: '61 * * * *'}", "rules.yaml:2: rules[0] ('a').cron: must be a cron expression"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, cron: '0 0 * * 2', every: 1h}", "rules.yaml:2: rules[0] ('a').cron: give either every or cron, not both"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, action: retrain}", "rules.yaml:2: rules[0] ('a').action: must name an action of actions: (none defined) (got 'retrain')"),
    ("{name: a, kind: threshold, metric: m, op: '>', value: 1, aggregate: share}", "rules.yaml:2: rules[0] ('a').share_tags: is required with aggregate: share"),
    ("{name: a, kind: regression, source: training_runs, training_run: r, metric: acc, threshold: 0.1}", "rules.yaml:2: rules[0] ('a').baseline: must be {kind: runs, runs: N}"),
    ("{name: a, kind: regression, metric: m, threshold: 0.1, baseline: {kind: weekly}}", "rules.yaml:2: rules[0] ('a').baseline.kind: must be one of 'previous', 'days_ago', 'runs' (got 'weekly')"),
    ("{name: a, kind: regression, metric: m, threshold: -1}", "rules.yaml:2: rules[0] ('a').threshold: input should be greater than 0 (got -1)"),
    ("{name: a, kind: drift, model: m, method: foo}", "rules.yaml:2: rules[0] ('a').method: must be one of 'psi', 'ks', 'wasserstein', 'jensenshannon', 'chisquare' or 'auto' (got 'foo')"),
    ("{name: a, kind: drift, model: m, threshold: 0.2}", "rules.yaml:2: rules[0] ('a').threshold: needs a method"),
    ("{name: a, kind: drift, model: m, drift_share: 1.5}", "rules.yaml:2: rules[0] ('a').drift_share: input should be less than or equal to 1 (got 1.5)"),
    ("{name: a, kind: drift, model: m, reference: {kind: range, start: 2026-01-02, end: 2026-01-01}}", "rules.yaml:2: rules[0] ('a').reference: end must be after start"),
    ("{name: a, kind: absence, absent_for: 1h}", "rules.yaml:2: rules[0] ('a'): needs exactly one of metric, pipeline, training_run"),
    ("{name: a, kind: absence, metric: m}", "rules.yaml:2: rules[0] ('a').absent_for: is required"),
    ("{name: a, kind: new_data, training_run: r}", "rules.yaml:2: rules[0] ('a').at_least: is required"),
    ("{name: a, kind: task_event, pipeline: p, on: [explode]}", "rules.yaml:2: rules[0] ('a').on: must be events among success, failure, retry"),
    ("{name: a, kind: threshold, metric: 'bad metric', op: '>', value: 1}",
     "rules.yaml:2: rules[0] ('a').metric: may hold only letters, digits and _ . : / - (and not start with . : / -) (got 'bad metric')"),
    ("{name: a, kind: task_event, on: [failure]}", "rules.yaml:2: rules[0] ('a'): needs exactly one of pipeline (task runs) or training_run"),
])
def test_each_invalid_rule_gets_its_message(rule, expected):
    message = error_of(f"rules:\n  - {rule}\n")
    assert message.startswith(expected), message


def test_every_problem_is_reported_in_line_order():
    text = """actions:
  retrain: {kind: command, command: [python, train.py]}
rules:
  - name: a
    kind: task_event
    pipeline: p
  - name: a
    kind: task_event
    pipeline: p
    action: retrian
  - name: b
    kind: drift
    model: m
    window: soon
"""
    problem = error_of(text).splitlines()
    assert problem == [
        "rules.yaml:7: rules[1] ('a').name: duplicate rule name (rules[0] has it too) (got 'a')",
        "rules.yaml:10: rules[1] ('a').action: must name an action of actions: (retrain) (got 'retrian')",
        "rules.yaml:14: rules[2] ('b').window: must be a duration like 30m, 1h, 7d (got 'soon')",
    ]


def test_file_level_errors():
    assert error_of("") == "rules.yaml:1: rules: is required (the file is empty)"
    assert error_of("rules: [\n").startswith("rules.yaml:2: invalid YAML")
    assert error_of("rules: []\nrules: []\n") == "rules.yaml:2: rules: appears twice"
    assert error_of("- 1\n").startswith("rules.yaml:1: the file must be a mapping")
    assert error_of("rules: []\nslack: {chanel: x}\n") == "rules.yaml:2: slack.chanel: unknown field"
    assert error_of("rules: []\nactions:\n  go: {kind: webhook, url: ftp://x}\n") == (
        "rules.yaml:3: actions.go.url: must be an http:// or https:// URL (got 'ftp://x')")
    assert error_of("rules: []\nactions:\n  go: {kind: celery, broker: redis://}\n") == "rules.yaml:3: actions.go.task: is required"
    assert error_of("rules: []\nsilences:\n  - {matchers: {rule: a}}\n") == "rules.yaml:3: silences[0].ends_at: is required"


def test_yaml_on_is_a_key_not_a_boolean_and_numbers_in_tags_are_text():
    rules = parse_rules("rules:\n  - {name: t, kind: task_event, training_run: r, on: finished}\n"
                        "  - {name: u, kind: threshold, metric: m, tags: {shard: 3}, op: '<', value: 1}\n")
    assert rules.rules[0].on == ["success"]
    assert rules.rules[1].tags == {"shard": "3"}


def test_load_rules_names_an_unreadable_file(tmp_path):
    with pytest.raises(RuleError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_runs_baseline_for_task_runs():
    rule = parse_rules("rules:\n  - {name: a, kind: regression, source: task_runs, pipeline: p, measure: failure_rate,"
                       " baseline: {kind: runs, runs: 20}, change: absolute, threshold: 0.2}\n").rules[0]
    assert rule.baseline == LastRuns(kind="runs", runs=20)
