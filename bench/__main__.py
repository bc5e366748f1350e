"""Run the benchmarks and print one table: ``python -m bench [SECTION ...]``.

Sections are modules of this package with a ``run() -> list[Result]``; with
no argument every section runs. Figures are measured in this run, side by side
with what a user would use instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.common import print_table

SECTIONS = {
    "store": "bench.store_bench",
    "backends": "bench.backends_bench",
    "collectors": "bench.collectors_bench",
    "codec": "bench.codec_bench",
    "alerts": "bench.alerts_bench",
    "dashboard": "bench.dashboard_bench",
    "scale": "bench.scale_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    results = []
    for name in args.sections or list(SECTIONS):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(importlib.import_module(SECTIONS[name]).run())
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
