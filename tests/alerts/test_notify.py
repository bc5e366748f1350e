"""notify(), the @alarm decorator, ``tablewatch notify`` and the silence
commands: all through the alert outbox, so a Slack outage loses nothing."""

from __future__ import annotations

import httpx
import pytest

from tablewatch import Collector
from tablewatch.alerts import alarm, notify
from tablewatch.alerts.delivery import Delivery
from tablewatch.alerts.interactive import AlertRoutes
from tablewatch.alerts.slack import WebAPINotifier
from tablewatch.alerts.state import AlertState
from tablewatch.cli import main
from tablewatch.collectors.server import create_app, serve_in_thread
from tablewatch.errors import ValidationError
from tests.alerts.engine_fixtures import slack  # noqa: F401 (fixture)


@pytest.fixture
def bot(slack):
    return WebAPINotifier(slack.token, "#ml", base_url=slack.api_url, min_interval_s=0)


def test_notify_goes_through_the_outbox(slack, store, bot):
    assert notify("export done", {"rows": 12}, title="nightly", store=store, notifier=bot) is True
    (call,) = slack.calls()
    assert call["text"] == "nightly: export done (rows=12)" and call["blocks"][0]["type"] == "header"
    (logged,) = AlertState(store).notifications()
    assert logged.status == "sent" and logged.kind == "notify"
    with pytest.raises(ValidationError, match="text"):
        notify("", store=store, notifier=bot)
    with pytest.raises(ValidationError, match="severity"):
        notify("x", severity="apocalyptic", store=store, notifier=bot)


def test_slack_down_the_message_waits_and_is_sent_once(slack, store, bot):
    slack.stop()
    assert notify("first", store=store, notifier=bot) is False
    assert notify("second", store=store, notifier=bot) is False
    assert [n.text for n in AlertState(store).outbox()] == ["first", "second"]
    slack.start()
    report = Delivery(AlertState(store), bot, clock=lambda: 4e9).deliver()  # later: the backoff has passed
    assert report.sent == 2 and [c["text"] for c in slack.calls()] == ["first", "second"]
    assert Delivery(AlertState(store), bot, clock=lambda: 4e9).deliver().sent == 0


def test_store_down_still_notifies_and_never_raises(slack, bot, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    assert notify("store is down", store=f"sqlite:///{blocked}/tw.db", notifier=bot) is True
    assert [c["text"] for c in slack.calls()] == ["store is down"]
    slack.stop()
    assert notify("both down", store=f"sqlite:///{blocked}/tw.db", notifier=bot) is False


def test_alarm_on_success_reports_duration_and_metrics_and_records_the_run(slack, store, bot):
    collector = Collector(store, flush_interval=3600)

    @alarm(name="ranker", collector=collector, store=store, notifier=bot)
    def train(epochs):
        collector.log("train.loss", 0.5, step=1)
        return {"val.acc": 0.93, "epochs": epochs, "note": "not a number"}

    assert train(3) == {"val.acc": 0.93, "epochs": 3, "note": "not a number"}
    collector.flush()
    (call,) = slack.calls()
    assert call["text"].startswith("ranker finished: Training *ranker* finished in ")
    fields = str(call["blocks"])
    assert "*val.acc*\\n0.93" in fields and "*epochs*\\n3" in fields and "*duration*" in fields
    (run,) = store.read_training_runs("ranker")
    assert run.status == "success" and run.metrics == {"val.acc": 0.93, "epochs": 3.0}
    assert run.run_id in fields
    collector.close()


def test_alarm_on_failure_reports_where_and_reraises(slack, store, bot):
    collector = Collector(store, flush_interval=3600)

    @alarm(collector=collector, store=store, notifier=bot)
    def fit():
        raise ValueError("loss is NaN at step 1200")

    with pytest.raises(ValueError, match="loss is NaN"):
        fit()
    line = fit.__wrapped__.__code__.co_firstlineno + 2
    collector.flush()
    (call,) = slack.calls()
    text = str(call["blocks"])
    assert call["text"].startswith("fit failed: Training *fit* failed after ")
    assert "ValueError" in text and "loss is NaN at step 1200" in text and f"test_notify.py:{line}" in text
    (run,) = store.read_training_runs("fit")
    assert run.status == "failure" and run.error == "ValueError: loss is NaN at step 1200"
    collector.close()


def test_alarm_with_slack_down_does_not_break_the_job(slack, store, bot):
    slack.stop()

    @alarm(store=store, notifier=bot)
    def quick():
        return 42

    assert quick() == 42
    assert [n.status for n in AlertState(store).notifications()] == ["pending"]
    assert store.read_training_runs("quick")[0].status == "success"


def test_cli_notify_direct_and_through_the_server(slack, store, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/tw.db"
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
    monkeypatch.setenv("SLACK_CHANNEL", "#ops")
    monkeypatch.setenv("TABLEWATCH_SLACK_API_URL", slack.api_url)
    assert main(["notify", "deploy done", "--field", "version=1.2", "--store", url]) == 0
    assert capsys.readouterr().out == "sent\n"
    assert slack.calls()[0]["channel"] == "#ops" and slack.calls()[0]["text"] == "deploy done (version=1.2)"
    app = create_app(store, "s3cret", routes=AlertRoutes(AlertState(store), WebAPINotifier(
        slack.token, "#ops", base_url=slack.api_url, min_interval_s=0), signing_secret=None, token="s3cret").routes())
    with serve_in_thread(app) as server:
        assert main(["notify", "from a shell step", "--server", server, "--token", "s3cret"]) == 0
        assert capsys.readouterr().out == "queued\n"
        assert slack.wait_for(2)[1]["text"] == "from a shell step"
        assert main(["notify", "x", "--server", server, "--token", "wrong"]) == 2
        assert "401" in capsys.readouterr().err
        refused = httpx.post(server + "/slack/actions", content=b"payload=%7B%7D")
        assert refused.status_code == 503 and refused.json()["field"] == "SLACK_SIGNING_SECRET"


def test_cli_silences(store, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/tw.db"
    assert main(["alerts", "silence", "add", "--match", "alertname=etl-slow", "--match", "task=extract",
                 "--for", "2h", "--comment", "backfill", "--store", url]) == 0
    silence_id = capsys.readouterr().out.split()[1]
    assert main(["alerts", "silence", "list", "--store", url]) == 0
    listing = capsys.readouterr().out
    assert silence_id in listing and "alertname=etl-slow,task=extract" in listing and "# backfill" in listing
    assert main(["alerts", "silence", "expire", silence_id, "--store", url]) == 0
    assert capsys.readouterr().out == f"silence {silence_id} expired\n"
    assert main(["alerts", "silence", "list", "--store", url]) == 0
    assert silence_id not in capsys.readouterr().out
    assert main(["alerts", "silence", "list", "--all", "--store", url]) == 0
    assert "expired" in capsys.readouterr().out
    assert main(["alerts", "silence", "expire", "nope", "--store", url]) == 2
    assert "silence_id: no such silence" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["alerts", "silence", "add", "--match", "novalue", "--for", "1h", "--store", url])
    assert "must be LABEL=VALUE" in capsys.readouterr().err
    assert main(["alerts", "silence", "add", "--match", "a=b", "--until", "yesterday", "--store", url]) == 2
    assert "--until" in capsys.readouterr().err
