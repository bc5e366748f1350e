"""Best of three: a Celery chord trains three models in parallel, picks the
most accurate, "deploys" it and reports to Slack; Celery beat runs it every
night. tablewatch records every attempt, retry and duration (the Celery
instrumentation) and every model's accuracy curve (training runs).

    celery -A tasks worker --beat --concurrency 3     # with a real broker: CELERY_BROKER_URL=redis://...
    python run.py                                     # once, now, with an in-process worker (memory broker)
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

from celery import Celery, chord
from celery.schedules import crontab

import tablewatch
from tablewatch.alerts import notify
from tablewatch.collectors.celery import instrument

app = Celery("best-of-three",
             broker=os.environ.get("CELERY_BROKER_URL", "memory://"),
             backend=os.environ.get("CELERY_RESULT_BACKEND", "cache+memory://"))
app.conf.update(
    broker_transport_options={"polling_interval": 0.05},
    beat_schedule={
        "best-of-three-nightly": {"task": "best_of_three.train_and_deploy", "schedule": crontab(hour=2, minute=30)},
    },
)
collector = tablewatch.Collector()  # the store: $TABLEWATCH_STORE, else ./tablewatch.db
instrument(app, collector)  # every attempt of every task of `app` becomes a task run

#: candidate: (params, how good it gets, whether its first attempt finds the GPU busy)
CANDIDATES = {
    "logreg": ({"C": 1.0}, 0.81, False),
    "gbm": ({"max_depth": 6, "n_estimators": 300}, 0.88, True),
    "mlp": ({"hidden": 128, "lr": 0.001}, 0.85, False),
}
DEPLOY_DIR = Path(os.environ.get("BEST_OF_THREE_DEPLOY_DIR", "deployed"))


class GpuBusy(RuntimeError):
    pass


@app.task(bind=True, name="best_of_three.train", max_retries=3, default_retry_delay=0)
def train(self, candidate: str, epochs: int = 8) -> dict:
    params, ceiling, flaky = CANDIDATES[candidate]
    if flaky and self.request.retries == 0:
        try:
            raise GpuBusy("GPU 0 is busy (another job holds it)")
        except GpuBusy as e:
            raise self.retry(exc=e, countdown=0)  # recorded as attempt 1: retry, attempt 2: ...
    rng = random.Random(candidate)
    with collector.run("best-of-three", params={"candidate": candidate, **params}) as run:
        accuracy = 0.5
        for epoch in range(epochs):
            time.sleep(0.02)  # the real training goes here
            accuracy = ceiling - (ceiling - 0.5) * math.exp(-epoch / 2) + rng.gauss(0, 0.003)
            run.log_many({"val.accuracy": accuracy, "train.loss": 1.0 - accuracy}, step=epoch)
        run.summary({"accuracy": accuracy})
    return {"candidate": candidate, "accuracy": accuracy, "run_id": run.run_id}


@app.task(name="best_of_three.pick_and_deploy")
def pick_and_deploy(results: list[dict]) -> dict:
    best = max(results, key=lambda r: r["accuracy"])
    DEPLOY_DIR.mkdir(parents=True, exist_ok=True)
    (DEPLOY_DIR / "current.json").write_text(json.dumps(best))  # "deploy": whatever yours does
    collector.log("deploy.accuracy", best["accuracy"], tags={"pipeline": "best-of-three", "model": best["candidate"]})
    notify(f"Deployed *{best['candidate']}* (accuracy {best['accuracy']:.3f}), the best of {len(results)}",
           {r["candidate"]: f"{r['accuracy']:.3f} (run {r['run_id'][:8]})" for r in results},
           title="best of three")
    return best


@app.task(name="best_of_three.train_and_deploy")
def train_and_deploy() -> str:
    """What beat starts: the chord (three trainings in parallel, then the pick)."""
    return chord(train.s(name) for name in CANDIDATES)(pick_and_deploy.s()).id
