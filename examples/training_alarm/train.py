"""The training-done alarm: Slack hears when training ends — how long it took
and its final metrics — or, when it fails, the exception and the file:line
where it was raised.

    TABLEWATCH_STORE=sqlite:///tmp/alarm.db python train.py --epochs 5
    TABLEWATCH_STORE=sqlite:///tmp/alarm.db python train.py --epochs 5 --fail-at 3

With no SLACK_* variable set the message is printed on the console (and kept
in the store's outbox like any other); set SLACK_BOT_TOKEN and SLACK_CHANNEL,
or SLACK_WEBHOOK_URL, to send it to Slack.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import tablewatch
from tablewatch.alerts import alarm

collector = tablewatch.Collector()  # the store: $TABLEWATCH_STORE, else ./tablewatch.db


@alarm(name="sentiment", collector=collector, params={"lr": 0.003, "batch_size": 64})
def train(epochs: int, fail_at: int | None = None, seconds_per_epoch: float = 0.05) -> dict[str, float]:
    rng = random.Random(3)
    accuracy = 0.5
    for epoch in range(epochs):
        time.sleep(seconds_per_epoch)  # the real work goes here
        loss = math.exp(-epoch / 2) + rng.uniform(0, 0.02)
        accuracy = 0.95 - 0.45 * math.exp(-epoch / 2)
        collector.log_many({"train.loss": loss, "val.accuracy": accuracy}, step=epoch)  # tagged with the run
        if fail_at is not None and epoch >= fail_at:
            raise FloatingPointError(f"loss is NaN at epoch {epoch}")
    return {"val.accuracy": accuracy, "epochs": float(epochs)}  # the run's final metrics, in the message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fail-at", type=int, help="raise at this epoch (to see the failure message)")
    args = parser.parse_args()
    try:
        metrics = train(args.epochs, args.fail_at)
        print(f"trained: {metrics}")
        return 0
    finally:
        collector.close()


if __name__ == "__main__":
    raise SystemExit(main())
