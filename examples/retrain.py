"""What the demo's Retrain button runs (action ``retrain`` in examples/rules.yaml).

A stand-in for a training job: it records a short training run of the alert's
model through the Collector (a curve of ``train.loss``, ``val.loss`` and
``val.accuracy``, then the run's summary) and prints what it recorded, which
Slack's message shows under "Retrain ran". The run is real data in the store:
the dashboard's Training page lists it, and the ``ranker-new-data`` rule counts
new data from it on.

The alert comes in the environment an action runs with (``TABLEWATCH_RULE``,
``TABLEWATCH_INCIDENT``, ``TABLEWATCH_USER``, ``TABLEWATCH_LABEL_<NAME>``); the
store is ``$TABLEWATCH_STORE`` (``tablewatch demo`` sets it for its services)::

    TABLEWATCH_STORE=sqlite://tablewatch-demo.db python examples/retrain.py --model ranker
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

import tablewatch

EPOCHS = 8


def retrain(model: str, store: str | None, reason: str) -> tablewatch.TrainingRun:
    rng = random.Random()
    params = {"lr": 0.003, "epochs": EPOCHS, "reason": reason}
    with tablewatch.Collector(store) as collector:
        with collector.run(model, params=params) as run:
            for epoch in range(EPOCHS):
                train_loss = 0.7 * math.exp(-epoch / 3) + 0.12 + rng.gauss(0, 0.005)
                run.log_many({"train.loss": train_loss, "val.loss": train_loss + 0.04,
                              "val.accuracy": 0.9 - 0.5 * train_loss}, step=epoch)
        record = run.record
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("TABLEWATCH_LABEL_MODEL", "ranker"),
                        help="the model to retrain (default: the alert's `model` label, else ranker)")
    parser.add_argument("--store", default=None, help="store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db)")
    args = parser.parse_args(argv)
    rule, incident = os.environ.get("TABLEWATCH_RULE"), os.environ.get("TABLEWATCH_INCIDENT")
    who = os.environ.get("TABLEWATCH_USER") or "someone"
    reason = f"{rule} ({incident}), asked by {who}" if rule else "run by hand"
    record = retrain(args.model, args.store, reason)
    metrics = ", ".join(f"{name} {value:.3f}" for name, value in sorted(record.metrics.items()))
    seconds = (record.ended_at - record.started_at).total_seconds() if record.ended_at else 0.0
    print(f"retrained {record.name}: run {record.run_id} {record.status} in {seconds:.1f} s ({metrics}); "
          f"reason: {reason}")
    return 0 if record.status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
