"""examples/training_alarm: the decorated training function tells Slack its
duration and metrics, or its exception with file:line."""

from __future__ import annotations

from tablewatch import open_store
from tests.examples.conftest import EXAMPLES, example_env, run_example


def line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_success_and_failure_reach_slack(tmp_path, slack):
    env = example_env(f"sqlite:///{tmp_path}/alarm.db", slack)
    done = run_example("training_alarm", "train.py", "--epochs", "4", env=env)
    assert done.returncode == 0, done.stderr
    failed = run_example("training_alarm", "train.py", "--epochs", "4", "--fail-at", "2", env=env)
    assert failed.returncode == 1 and "FloatingPointError: loss is NaN at epoch 2" in failed.stderr

    finished, crashed = slack.wait_for(2, "chat.postMessage")
    assert finished["channel"] == "#ml" and "Training *sentiment* finished in" in finished["text"]
    assert "val.accuracy" in str(finished["blocks"]) and "duration" in str(finished["blocks"])
    where = f"{EXAMPLES / 'training_alarm' / 'train.py'}:{line_of(EXAMPLES / 'training_alarm' / 'train.py', 'raise FloatingPointError')}"
    assert "failed after" in crashed["text"] and "FloatingPointError" in crashed["text"]
    assert where in str(crashed["blocks"])

    with open_store(f"sqlite:///{tmp_path}/alarm.db", create=False) as store:
        runs = store.read_training_runs("sentiment")
        assert sorted(r.status for r in runs) == ["failure", "success"]
        good = next(r for r in runs if r.status == "success")
        assert good.metrics["val.accuracy"] > 0.8 and good.params["lr"] == 0.003
        ts, values, steps = store.read_arrays("val.accuracy", {"run": good.run_id, "run_name": "sentiment"})
        assert list(steps) == [0, 1, 2, 3]
