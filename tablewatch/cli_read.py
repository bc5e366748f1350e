"""Commands that read a store (and ``store retention``, which changes one):
``store info``, ``store hotspots``, ``store retention``, ``series``, ``query``.

None of them creates a store: pointed at one that does not exist they say so
and exit 2. Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

STORE_HELP = "store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db); never created by this command"


def _format_age(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tags(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


RETENTION_TEXT = {
    "points": "points of ordinary series (no run tag)",
    "run_points": "points of training runs' series (tagged run=...)",
    "tasks": "task runs",
    "runs": "training run records",
    "sketches": "distribution sketches",
}


def _print_retention(retention: dict[str, float | None], has_run_family: bool = True) -> None:
    for kind, age in retention.items():
        note = RETENTION_TEXT.get(kind, "")
        if kind == "run_points" and not has_run_family:
            note += "; this store predates their own family: they follow points"
        print(f"  {kind:<11} {_format_age(age):>8}  {note}")


def cmd_store_info(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store, create=False) as store:
        info = store.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mode = " (read-only)" if info["read_only"] else ""
    print(f"store          {info['url']} ({info['backend']}){mode}")
    print(f"schema         {info['schema']}")
    print(f"salt buckets   {info['salt_buckets']}")
    print(f"time bucket    {info['bucket_seconds']} s")
    print("retention (max age by data time; change with `tablewatch store retention --set KIND=AGE`)")
    _print_retention(info["retention_s"], info["run_points_family"])
    print()
    print(f"{'table':<14} {'rows':>10} {'splits':>13}  families (gc policy)")
    for table in info["tables"]:
        families = ", ".join(
            f"{name} (versions={policy['max_versions'] or 'all'}, max age={_format_age(policy['max_age_s'])})"
            for name, policy in table["families"].items()
        )
        rows = f"{table['rows']}" if table["rows_exact"] else f">={table['rows']}"
        splits = f"{table['splits']} of {table['splits_requested']}"
        print(f"{table['name']:<14} {rows:>10} {splits:>13}  {families}")
    print()
    print("splits: pieces (tablets, regions) the backend reports now, of those requested at creation "
          "(salted tables are pre-split on their salt buckets).")
    if info["splits_note"]:
        print(f"        {info['splits_note']}")
    return 0


def cmd_store_hotspots(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store, create=False) as store:
        report = store.hotspots(window_s=args.window_s)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    buckets = report["salt_buckets"]
    total = sum(report["points"]) or 1
    peak = max(report["points"]) or 1
    print(f"{'salt':>4} {'rows':>8} {'points':>12} {'share':>7}")
    for salt, (rows, points) in enumerate(zip(report["rows"], report["points"])):
        bar = "#" * round(30 * points / peak)
        print(f"{salt:>4} {rows:>8} {points:>12} {points / total:>6.1%} {bar}")
    if report["skew"] is None:
        print("skew: no points yet")
        return 0
    print()
    window_h = report["window_s"] / 3600
    print(f"skew per window of {window_h:g} h ({buckets} time buckets of {report['bucket_seconds']} s):")
    print(f"{'window start (UTC)':<26} {'series':>7} {'points':>12} {'skew':>6}")
    for window in report["windows"][-args.windows:]:
        print(f"{_time(window['start']):<26} {window['series']:>7} {window['points']:>12} {window['skew']:>6.2f}")
    if len(report["windows"]) > args.windows:
        print(f"(the last {args.windows} of {len(report['windows'])} windows; --windows N shows more)")
    print(f"overall skew: {report['skew']:.2f}")
    print()
    print(f"skew = max / mean points per salt bucket: 1.00 is even, {buckets:.2f} is everything in one bucket.")
    print("By design one time bucket of one series lands in one salt bucket, and the salt moves on with each")
    print(f"time bucket: a series is spread evenly over {buckets} consecutive time buckets (one window). A high")
    print("skew in a window with few series, or over less than one full window of data, is expected; a high")
    print("skew over full windows of many series means a few series carry most points (a hotspot).")
    return 0


def _parse_age(text: str) -> float | None:
    from tablewatch.store.query import parse_duration

    if text.lower() in ("forever", "none", "inf"):
        return None
    return parse_duration(text, "--set")


def cmd_store_retention(args: argparse.Namespace) -> int:
    from tablewatch.errors import ValidationError
    from tablewatch.store import open_store
    from tablewatch.store.timeseries import RETENTION_KINDS

    changes: dict[str, float | None] = {}
    for item in args.set:
        kind, sep, age = item.partition("=")
        if not sep or kind not in RETENTION_KINDS:
            raise ValidationError("--set", item, f"must be KIND=AGE with KIND one of {', '.join(RETENTION_KINDS)} "
                                  "and AGE like 30d, 12h, 400d or forever")
        changes[kind] = _parse_age(age)
    with open_store(args.store, create=False) as store:
        retention = store.set_retention(changes) if changes else store.retention()
        has_run_family = "r" in store.backend.table_info("tw_points").families
        url = store.url
    if args.json:
        print(json.dumps(retention, indent=2))
        return 0
    if changes:
        print(f"retention of {url} changed ({', '.join(sorted(changes))}):")
    else:
        print(f"retention of {url} (max age by data time):")
    _print_retention(retention, has_run_family)
    if changes:
        print("Older records are hidden at once and removed when the backend collects garbage "
              "(`tablewatch store compact` on the embedded store). Processes that have the store open see "
              "the change when they reopen it.")
    return 0


def cmd_series(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store
    from tablewatch.store.query import parse_tags, summarize_series

    tags = parse_tags(args.tag, "--tag")
    with open_store(args.store, create=False) as store:
        summaries = summarize_series(store, args.metric, tags, args.limit)
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return 0
    if not summaries:
        print("no series" + (f" of metric {args.metric}" if args.metric else "") + (f" with {_tags(tags)}" if tags else ""),
              file=sys.stderr)
        return 1
    rows = [(s.metric, _tags(dict(s.tags)), str(s.points), _time(s.last_ts),
             "-" if s.last_value is None else f"{s.last_value:g}") for s in summaries]
    header = ("metric", "tags", "points", "last point (UTC)", "last value")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store
    from tablewatch.store.query import parse_tags, parse_time, points_payload

    tags = parse_tags(args.tag, "--tag")
    start = parse_time(args.start, "--start") if args.start else None
    end = parse_time(args.end, "--end") if args.end else None
    with open_store(args.store, create=False) as store:
        frame = store.read_points(args.metric, tags, start, end, max_points=args.max_points)
    payload = points_payload(args.metric, tags, frame)
    if args.format == "json":
        print(json.dumps(payload, indent=2))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["ts", "value", "step"])
        for point in payload["points"]:
            writer.writerow([_time(point["ts"]), _csv_value(point["value"]), "" if point["step"] is None else point["step"]])
    else:
        print(f"{'ts (UTC)':<26} {'value':>14} {'step':>10}")
        for point in payload["points"]:
            value = "nan" if point["value"] is None else f"{point['value']:.6g}"
            step = "" if point["step"] is None else str(point["step"])
            print(f"{_time(point['ts']):<26} {value:>14} {step:>10}")
        print(f"{payload['count']} points of {args.metric}{{{_tags(tags) if tags else ''}}}", file=sys.stderr)
    return 0


def _csv_value(value: Any) -> str:
    return "nan" if value is None else repr(value)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def add_store_commands(store_commands: argparse._SubParsersAction) -> None:
    """``store info``, ``store hotspots`` and ``store retention``."""
    info = store_commands.add_parser("info", help="tables, families, GC policies, retention, row counts, splits")
    hotspots = store_commands.add_parser("hotspots", help="points per salt bucket, and the skew per time window and overall")
    hotspots.add_argument("--window-s", type=_positive, default=None,
                          help="window of the per-window skew, in seconds (default: salt buckets x time bucket)")
    hotspots.add_argument("--windows", type=_positive, default=12, help="how many of the last windows to print (default: 12)")
    retention = store_commands.add_parser(
        "retention", help="show, or change with --set, how long each kind of record is kept")
    retention.add_argument("--set", action="append", default=[], metavar="KIND=AGE",
                           help="e.g. points=30d, run_points=forever, tasks=90d, runs=forever, sketches=400d "
                                "(repeatable; units ms s m h d w n y)")
    for sub, handler in ((info, cmd_store_info), (hotspots, cmd_store_hotspots), (retention, cmd_store_retention)):
        sub.add_argument("--store", help=STORE_HELP)
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(handler=handler)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """``series`` and ``query``."""
    series = commands.add_parser("series", help="series with their tags, point counts and last points")
    series.add_argument("metric", metavar="METRIC", nargs="?", help="only this metric (default: every metric)")
    series.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="only series with this tag (repeatable)")
    series.add_argument("--limit", type=_positive, default=None, help="at most this many series")
    series.add_argument("--json", action="store_true", help="print JSON")
    series.add_argument("--store", help=STORE_HELP)
    series.set_defaults(handler=cmd_series)

    query = commands.add_parser("query", help="points of one series (table, CSV or JSON)")
    query.add_argument("metric", metavar="METRIC")
    query.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                       help="a tag of the series (repeatable; give all its tags)")
    query.add_argument("--start", help="from (inclusive): epoch seconds, ISO-8601, now, or like 1h-ago")
    query.add_argument("--end", help="to (exclusive): same forms (default: no end)")
    query.add_argument("--max-points", type=_positive, default=None,
                       help="downsample to at most N points, keeping each interval's min and max")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output (default: table)")
    query.add_argument("--store", help=STORE_HELP)
    query.set_defaults(handler=cmd_query)
