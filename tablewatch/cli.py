"""The ``tablewatch`` command.

Configuration is read here, once, and passed down: ``--store`` else
``$TABLEWATCH_STORE`` else ``./tablewatch.db``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tablewatch.errors import TablewatchError


def _format_age(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def cmd_store_info(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        info = store.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store          {info['url']} ({info['backend']})")
    print(f"salt buckets   {info['salt_buckets']}")
    print(f"time bucket    {info['bucket_seconds']} s")
    print()
    print(f"{'table':<14} {'rows':>10}  families (gc policy)")
    for table in info["tables"]:
        families = ", ".join(
            f"{name} (versions={policy['max_versions'] or 'all'}, max age={_format_age(policy['max_age_s'])})"
            for name, policy in table["families"].items()
        )
        rows = f"{table['rows']}" if table["rows_exact"] else f"~{table['rows']}"
        print(f"{table['name']:<14} {rows:>10}  {families}")
    return 0


def cmd_store_hotspots(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        report = store.hotspots()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    total = sum(report["points"]) or 1
    peak = max(report["points"]) or 1
    print(f"{'salt':>4} {'rows':>8} {'points':>12} {'share':>7}")
    for salt, (rows, points) in enumerate(zip(report["rows"], report["points"])):
        bar = "#" * round(30 * points / peak)
        print(f"{salt:>4} {rows:>8} {points:>12} {points / total:>6.1%} {bar}")
    skew = report["skew"]
    print(f"skew (max/mean points per salt bucket): {skew:.2f}" if skew else "skew: no points yet")
    return 0


def cmd_store_compact(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        removed = store.compact()
    print(f"removed {removed} expired cells")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tablewatch", description="Monitoring store for ML systems.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    store_parser = commands.add_parser("store", help="inspect and maintain a store")
    store_commands = store_parser.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    for name, handler, help_text in (
        ("info", cmd_store_info, "tables, families, GC policies, row counts, salt buckets"),
        ("hotspots", cmd_store_hotspots, "points per salt bucket and the skew (max/mean)"),
        ("compact", cmd_store_compact, "remove cells past their family's max age or versions"),
    ):
        sub = store_commands.add_parser(name, help=help_text)
        sub.add_argument("--store", help="store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db)")
        if name != "compact":
            sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TablewatchError as e:
        print(f"tablewatch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
