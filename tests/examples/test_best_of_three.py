"""examples/best_of_three: a real Celery worker runs the chord the beat
schedule starts; every attempt, the retry and each model's accuracy are in the
store, the best model is deployed and Slack hears about it."""

from __future__ import annotations

import json

from tablewatch import open_store
from tests.examples.conftest import example_env, run_example


def test_the_chord_trains_three_picks_the_best_and_reports(tmp_path, slack):
    url = f"sqlite:///{tmp_path}/best.db"
    env = example_env(url, slack, BEST_OF_THREE_DEPLOY_DIR=str(tmp_path / "deployed"))
    result = run_example("best_of_three", "run.py", env=env)
    assert result.returncode == 0, result.stderr
    assert "deployed gbm" in result.stdout
    # the beat schedule's task (every night at 02:30), sent by name as beat sends it, started the chord
    assert "beat schedule: best_of_three.train_and_deploy <crontab: 30 2 * * *" in result.stdout

    deployed = json.loads((tmp_path / "deployed" / "current.json").read_text())
    (message,) = slack.wait_for(1, "chat.postMessage")
    assert "Deployed *gbm*" in message["text"] and "best of 3" in message["text"]
    assert all(name in str(message["blocks"]) for name in ("logreg", "gbm", "mlp"))

    with open_store(url, create=False) as store:
        runs = store.read_training_runs("best-of-three")
        accuracy = {r.params["candidate"]: r.metrics["accuracy"] for r in runs}
        trains = store.read_task_runs("best-of-three", "best_of_three.train")
        (pick,) = store.read_task_runs("best-of-three", "best_of_three.pick_and_deploy")
        (started,) = store.read_task_runs("best-of-three", "best_of_three.train_and_deploy")
        curve = store.read_arrays("val.accuracy", {"run": deployed["run_id"], "run_name": "best-of-three"})
    assert set(accuracy) == {"logreg", "gbm", "mlp"} and deployed["candidate"] == max(accuracy, key=accuracy.get)
    assert sorted((r.status, r.attempt) for r in trains) == [("retry", 1), ("success", 1), ("success", 1),
                                                              ("success", 2)]
    (retry,) = [r for r in trains if r.status == "retry"]
    assert retry.error_type == "GpuBusy"
    assert "best_of_three/tasks.py:" in retry.error_location
    successes = sorted((r for r in trains if r.status == "success"), key=lambda r: r.started_at)
    assert successes[1].started_at < successes[0].ended_at  # trained in parallel
    assert pick.status == "success" and pick.started_at >= max(r.ended_at for r in successes)
    assert started.status == "success" and started.started_at <= min(r.started_at for r in trains)
    assert len(curve[0]) == 8 and abs(curve[1][-1] - deployed["accuracy"]) < 1e-9

