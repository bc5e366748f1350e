"""A load generator for server.py: sends prediction requests, and after a
while shifts one feature (the population changed), which the drift rules and
the dashboard's Drift page then show.

    python loadgen.py --url http://127.0.0.1:8000 --requests 2000 --shift age=+15 --shift-after 1000
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import httpx

COUNTRIES = ("fr", "de", "us", "gb", "es")


def shift_of(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    if not sep or name not in ("age", "income"):
        raise argparse.ArgumentTypeError(f"must be age=+N or income=+N, got {text!r}")
    return name, float(amount)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="ranker")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0, help="requests per second (0: as fast as it answers)")
    parser.add_argument("--shift", type=shift_of, default=("age", 15.0), metavar="FEATURE=+N")
    parser.add_argument("--shift-after", type=int, default=None, help="requests before the shift (default: half)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shift_after = args.requests // 2 if args.shift_after is None else args.shift_after
    feature, amount = args.shift
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=args.url, timeout=10) as client:
        for i in range(args.requests):
            features = {"age": rng.gauss(38, 6), "income": rng.lognormvariate(10.6, 0.4),
                        "country": rng.choices(COUNTRIES, (0.3, 0.25, 0.25, 0.1, 0.1))[0]}
            if i >= shift_after:
                features[feature] += amount
            model = args.model if rng.random() > 0.01 else "unknown-model"  # a few 404s
            response = client.post(f"/predict/{model}", json=features)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if args.rate:
                time.sleep(1 / args.rate)
    print(f"sent {args.requests} requests ({feature} shifted by {amount:+g} after {shift_after}): "
          + ", ".join(f"{n} x {code}" for code, n in sorted(statuses.items())))
    return 0 if statuses.get(200) else 1


if __name__ == "__main__":
    sys.exit(main())
