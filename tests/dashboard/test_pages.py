"""Every page, run by Streamlit's AppTest on a filled store and on an empty one."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import tablewatch.dashboard
from tablewatch import open_store
from tablewatch.alerts.state import AlertState
from tests.dashboard.sample_data import FEATURES, FIRING_RULE, MODEL, PIPELINE, RESOLVED_RULE, ROUTES, RUNS, TASKS

APP = Path(tablewatch.dashboard.__file__).parent / "app.py"
PAGES = ("overview", "tasks", "training", "serving", "drift", "alerts", "store")


def open_page(monkeypatch, url, page, **params):
    monkeypatch.setenv("TABLEWATCH_STORE", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "overview":
        at.switch_page(f"views/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at):
    """{chart key: [trace names]} of the page's Plotly charts."""
    found = {}
    for element in at.get("plotly_chart"):
        key = element.proto.id.split("-", 1)[-1] if "chart." in element.proto.id else element.proto.id
        key = key[key.index("chart."):]
        found[key] = [trace.get("name") for trace in json.loads(element.proto.spec)["data"]]
    return found


def selectbox(at, label):
    return next(s for s in at.selectbox if s.label == label)


def test_tasks_page(monkeypatch, sample):
    url, filled = sample
    at = open_page(monkeypatch, url, "tasks", pipeline=PIPELINE, range="7d")
    found = charts(at)
    assert set(found) == {"chart.task_durations", "chart.retries_failures", "chart.gantt"}
    assert sorted(found["chart.retries_failures"]) == sorted(TASKS * 2)  # bars and failure rates
    assert {n for n in found["chart.task_durations"] if " " not in n} == set(TASKS)
    assert selectbox(at, "Pipeline").value == PIPELINE
    assert selectbox(at, "Time range").value == "7d"
    assert at.query_params["pipeline"] == PIPELINE and at.query_params["run"] == filled.pipeline_run_ids[-1]
    failed = at.dataframe[0].value
    assert set(failed["error_location"]) == {"etl/transform.py:42", "etl/load.py:88"}

    dots = next(t for t in at.toggle if t.label == "Every attempt as a dot")
    assert dots.value  # a few hundred attempts: each drawn by default
    dots.set_value(False).run()
    assert not at.exception
    assert {n.split(" ")[-1] for n in charts(at)["chart.task_durations"]} == {"p50", "p95"}
    dots.set_value(True).run()

    selectbox(at, "Task").select("load").run()
    assert not at.exception
    assert {n for n in charts(at)["chart.task_durations"] if " " not in n} == {"load"}
    assert at.query_params["task"] == "load"

    selectbox(at, "Pipeline").select("hourly-features").run()  # other tasks, other runs
    assert not at.exception
    assert selectbox(at, "Task").value == "(all tasks)"
    assert not at.info, [i.value for i in at.info]
    assert {n for n in charts(at)["chart.task_durations"] if " " not in n} == {"compute"}
    assert at.query_params["pipeline"] == "hourly-features" and "task" not in at.query_params


def test_tasks_page_restores_the_selection_from_the_url(monkeypatch, sample):
    url, filled = sample
    run_id = filled.pipeline_run_ids[2]
    at = open_page(monkeypatch, url, "tasks", pipeline=PIPELINE, task="transform", run=run_id, range="7d")
    assert selectbox(at, "Task").value == "transform"
    assert selectbox(at, "Pipeline run (Gantt)").value == run_id
    assert sorted(charts(at)["chart.gantt"]) == ["retry", "success"]


def test_training_page(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "training", model=MODEL, run=",".join(RUNS[:2]), range="7d")
    found = charts(at)
    assert sorted(found["chart.curve.train.loss"]) == sorted(RUNS[:2])
    assert sorted(found["chart.curve.val.auc"]) == sorted(RUNS[:2])
    assert "chart.system.system.cpu_percent" in found
    assert at.multiselect[0].value == list(RUNS[:2])
    compare = at.dataframe[0].value
    assert list(compare.columns) == list(RUNS[:2]) and "param.lr" in compare.index


def test_serving_page(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "serving", model=MODEL, range="7d")
    found = charts(at)
    assert set(found) == {"chart.latency", "chart.throughput", "chart.error_rate"}
    assert set(found["chart.throughput"]) == set(ROUTES)
    assert [m.label for m in at.metric] == ["Requests", "Errors (5xx)", "Worst p99 (s)"]
    assert at.metric[0].value == "6,000"
    selectbox(at, "Route").select(ROUTES[0]).run()
    assert charts(at)["chart.throughput"] == [ROUTES[0]]
    assert at.query_params["route"] == ROUTES[0]


def test_drift_page(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "drift", model=MODEL, feature="country")
    found = charts(at)
    assert {n for n in found["chart.drift_scores"] if "threshold" not in n} == set(FEATURES)
    assert [n.split(" ")[0] for n in found["chart.distribution"]] == ["reference", "current"]
    assert selectbox(at, "Feature").value == "country"
    assert any("age" in w.value and "country" in w.value for w in at.warning)


def test_overview_page(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "overview", range="7d")
    assert [m.label for m in at.metric] == ["Last point", "Last task run", "Last training run", "Last sketch"]
    assert all(m.value != "never" for m in at.metric)
    tables = [d.value for d in at.dataframe]
    pipelines = next(t for t in tables if "pipeline" in t.columns and "duration trend" in t.columns)
    assert set(pipelines["pipeline"]) == {PIPELINE, "hourly-features"}
    failures = next(t for t in tables if "error_type" in t.columns)
    assert set(failures["error_type"]) == {"KeyError"}
    firing = next(t for t in tables if "severity" in t.columns)
    assert firing[["rule", "state"]].values.tolist() == [[FIRING_RULE, "firing"]]
    assert firing["link"].iloc[0].startswith("/drift?")


def test_store_page(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "store")
    assert charts(at)["chart.salt_buckets"] == ["points"]
    assert [m.label for m in at.metric][:2] == ["Backend", "Salt buckets"]
    assert "tw_points" in set(at.dataframe[0].value["table"])


def alert_tables(at):
    """The Alerts page's tables, told apart by their columns."""
    found = {}
    for frame in (d.value for d in at.dataframe):
        columns = set(frame.columns)
        name = ("silences" if "matchers" in columns else "actions" if "action" in columns
                else "notifications" if "kind" in columns and "attempts" in columns
                else "incidents" if "resolved_at" in columns else "firing")
        found[name] = frame
    return found


def test_alerts_page_shows_incidents_notifications_actions_and_silences(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "alerts", range="7d")
    tables = alert_tables(at)
    assert tables["firing"]["rule"].tolist() == [FIRING_RULE]
    assert set(tables["incidents"]["state"]) == {"firing", "resolved"}
    assert selectbox(at, "Incident").value == tables["incidents"]["incident_id"].iloc[0]
    assert at.query_params["incident"] == tables["incidents"]["incident_id"].iloc[0]
    actions = tables["actions"]
    assert actions[["action", "user", "result"]].values.tolist() == [["retrain", "alice", "ran"]]
    assert tables["notifications"]["status"].tolist() == ["sent"]
    assert tables["silences"]["created_by"].tolist() == ["bob"]

    resolved = tables["incidents"].set_index("rule").loc[RESOLVED_RULE, "incident_id"]
    selectbox(at, "Incident").select(resolved).run()
    tables = alert_tables(at)
    assert tables["notifications"]["kind"].tolist() == ["resolved", "firing"]
    assert tables["actions"]["user"].tolist() == ["bob"]
    assert at.query_params["incident"] == resolved


def test_alerts_page_creates_and_expires_silences(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "alerts", range="7d")
    matchers = next(t for t in at.text_input if t.label == "Matchers")
    assert matchers.value.startswith(f"rule={FIRING_RULE}")  # suggested from the selected incident
    matchers.set_value(f"rule={FIRING_RULE}, feature=age")
    next(t for t in at.text_input if t.label == "Created by").set_value("carol")
    next(b for b in at.button if b.label == "Create silence").click().run()
    assert not at.exception and not at.error
    with open_store(url) as store:
        created = [s for s in AlertState(store).silences() if s.created_by == "carol"]
    assert len(created) == 1 and created[0].matchers == {"rule": FIRING_RULE, "feature": "age"}
    silences = alert_tables(at)["silences"]
    assert "carol" in set(silences["created_by"])

    selectbox(at, "Expire a silence").select(created[0].id)
    next(b for b in at.button if b.label == "Expire now").click().run()
    with open_store(url) as store:
        assert created[0].id not in {s.id for s in AlertState(store).silences()}
        assert created[0].id in {s.id for s in AlertState(store).silences(include_expired=True)}


def test_a_bad_silence_is_refused_with_the_field(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "alerts", range="7d")
    next(t for t in at.text_input if t.label == "Matchers").set_value("rule")
    next(b for b in at.button if b.label == "Create silence").click().run()
    assert any("matchers[0]" in e.value and "label=value" in e.value for e in at.error)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_and_explains_an_empty_store(monkeypatch, empty_url, page):
    at = open_page(monkeypatch, empty_url, page)
    assert not at.get("plotly_chart")
    assert any("Nothing has been sent to this store yet" in m.value for m in at.markdown)
    assert [s.label for s in at.selectbox] == ["Time range", "Auto-refresh"]


def test_a_bad_parameter_is_reported_and_ignored(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "tasks", pipeline=PIPELINE, range="2d")
    assert any("range" in e.value for e in at.error)
    assert selectbox(at, "Time range").value == "24h"
    assert selectbox(at, "Pipeline").value == PIPELINE



def test_auto_refresh_reruns_the_page_body(monkeypatch, sample):
    url, _ = sample
    at = open_page(monkeypatch, url, "serving", model=MODEL)
    selectbox(at, "Auto-refresh").select("10 s").run()
    assert not at.exception
    assert "chart.latency" in charts(at)


def test_an_unreachable_store_is_reported_not_raised(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    at = open_page(monkeypatch, f"sqlite:///{tmp_path / 'a-file' / 'tw.db'}", "tasks")
    assert any("Cannot read the store" in e.value for e in at.error)
