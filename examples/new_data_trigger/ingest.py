"""The data pipeline's side of the new-data trigger: each batch of new labelled
samples is counted as a point of `data.rows` (tag dataset=reviews).

    python ingest.py --rows 6000
"""

from __future__ import annotations

import argparse

import tablewatch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6000, help="new samples in this batch")
    parser.add_argument("--source", default="app-reviews")
    args = parser.parse_args()
    with tablewatch.Collector() as collector:  # $TABLEWATCH_STORE, else ./tablewatch.db
        # ... write the samples wherever they go, then count them:
        collector.log("data.rows", args.rows, tags={"dataset": "reviews", "source": args.source})
    print(f"recorded {args.rows} new rows of reviews")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
