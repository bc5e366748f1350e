"""The retraining the Train! button starts (the rules file's `retrain`
action), and the first training too. It is recorded as a training run named
`reviews`: the new-data rule counts rows since the newest one ended.

    python retrain.py

Run by `tablewatch server` on a click, it finds the alert in its environment:
TABLEWATCH_RULE, TABLEWATCH_INCIDENT, TABLEWATCH_USER (who clicked),
TABLEWATCH_LABELS (JSON).
"""

from __future__ import annotations

import math
import os

import tablewatch


def main() -> int:
    clicked_by = os.environ.get("TABLEWATCH_USER", "")
    with tablewatch.Collector() as collector:  # $TABLEWATCH_STORE, else ./tablewatch.db
        with collector.run("reviews", params={"lr": 0.001, "epochs": 5},
                           tags={"requested_by": clicked_by or "manual"}) as run:
            for epoch in range(5):
                loss = math.exp(-epoch / 2)  # the real training goes here
                run.log_many({"train.loss": loss, "val.accuracy": 0.92 - 0.3 * loss}, step=epoch)
    print(f"retrained reviews: run {run.run_id}" + (f" (Train! clicked by {clicked_by})" if clicked_by else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
