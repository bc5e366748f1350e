"""The ``tablewatch`` command.

Configuration is read here, once, and passed down: ``--store`` else
``$TABLEWATCH_STORE`` else ``./tablewatch.db``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tablewatch import cli_read
from tablewatch.errors import TablewatchError


def cmd_store_compact(args: argparse.Namespace) -> int:
    from tablewatch.store import open_store

    with open_store(args.store, create=False) as store:
        file_bytes = getattr(store.backend, "file_bytes", None)  # only the embedded store has a file
        before = file_bytes() if file_bytes else None
        removed = store.compact()
        print(f"removed {removed} expired cells")
        if args.vacuum and file_bytes is None:
            print("--vacuum: nothing to do, only the embedded (sqlite) store has a file to shrink")
        elif args.vacuum:
            store.backend.vacuum()
        if file_bytes is not None:
            print(f"file: {before / 1e6:.2f} MB -> {file_bytes() / 1e6:.2f} MB")
            if store.backend.auto_vacuum() != "incremental":
                print("this file does not shrink on its own: run `tablewatch store compact --vacuum` once")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    import os

    from tablewatch.extras import require

    require("starlette", "server", "tablewatch server")
    require("uvicorn", "server", "tablewatch server")
    from tablewatch.collectors.server import TOKEN_ENV, serve

    rules = args.rules or os.environ.get("TABLEWATCH_RULES") or None
    if rules is not None and not os.path.isfile(rules):  # before the store is opened (and maybe created)
        from tablewatch.errors import ValidationError

        raise ValidationError("--rules" if args.rules else "$TABLEWATCH_RULES", rules, "is not a file")
    serve(args.store, args.host, args.port, token=os.environ.get(TOKEN_ENV) or None,
          max_body_bytes=args.max_body_bytes, max_items=args.max_items, log_level=args.log_level,
          rules=rules, access_log=args.access_log)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    import os

    from tablewatch.collectors import push

    # $TABLEWATCH_INGEST_TOKEN is the server's; --token given with --store is refused by push.main.
    token = args.token or (os.environ.get(push.TOKEN_ENV) if args.server else None) or None
    return push.main(args.metric, args.value, tags=args.tag, step=args.step, ts=args.ts,
                     store=args.store, server=args.server, token=token)


def cmd_gateway_hbase_thrift(args: argparse.Namespace) -> int:
    from tablewatch.extras import require

    require("thriftpy2", "hbase", "tablewatch gateway hbase-thrift")
    from tablewatch.gateway.hbase_thrift import run

    return run(args)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return int(text)


_positive = cli_read._positive
STORE_HELP = "store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db)"


def build_parser() -> argparse.ArgumentParser:
    from tablewatch import __version__

    parser = argparse.ArgumentParser(prog="tablewatch", description="Monitoring store for ML systems.")
    parser.add_argument("--version", action="version", version=f"tablewatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    store_parser = commands.add_parser("store", help="inspect and maintain a store")
    store_commands = store_parser.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    cli_read.add_store_commands(store_commands)
    for name, handler, help_text in (
        ("compact", cmd_store_compact, "remove cells past their family's max age or versions"),
    ):
        sub = store_commands.add_parser(name, help=help_text)
        sub.add_argument("--store", help=cli_read.STORE_HELP)
        sub.add_argument("--vacuum", action="store_true",
                         help="then rewrite the SQLite file without free space (once, for a file created "
                              "before auto_vacuum; writers wait meanwhile)")
        sub.set_defaults(handler=handler)
    cli_read.add_commands(commands)
    from tablewatch import demo

    demo.add_commands(commands, _port)

    server = commands.add_parser(
        "server", help="serve the HTTP ingest API (token: $TABLEWATCH_INGEST_TOKEN)",
        description="Serve the HTTP ingest API. Requests need 'Authorization: Bearer <token>' when "
                    "$TABLEWATCH_INGEST_TOKEN is set; without it anyone who can reach the port can write (warned "
                    "at start).")
    server.add_argument("--store", help=STORE_HELP)
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080)")
    server.add_argument("--max-body-bytes", type=_positive, default=16 * 1024 * 1024,
                        help="larger bodies get 413 (default: 16777216, 16 MiB)")
    server.add_argument("--max-items", type=_positive, default=100_000,
                        help="most points, task runs or predictions per request; more get 413 (default: 100000)")
    server.add_argument("--rules", metavar="FILE", help="the alert rules file: its actions run on Slack's Retrain "
                        "button (default: $TABLEWATCH_RULES)")
    server.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="(default: info)")
    server.add_argument("--access-log", nargs="?", const="-", metavar="FILE",
                        help="log one line per request: to stdout, or appended to FILE (default: no access log)")
    server.set_defaults(handler=cmd_server)

    push = commands.add_parser("push", help="write one point (for shell scripts); exit 2 on bad input")
    push.add_argument("metric", metavar="METRIC")
    push.add_argument("value", metavar="VALUE")
    push.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag (repeatable)")
    push.add_argument("--step", help="training step (integer >= 0)")
    push.add_argument("--ts", help="epoch seconds or ISO-8601 (default: now)")
    target = push.add_mutually_exclusive_group()
    target.add_argument("--store", help=STORE_HELP)
    target.add_argument("--server", help="ingest server: http://127.0.0.1:8080, 127.0.0.1:8080 (http assumed) or "
                                        "the full .../api/v1/points URL")
    push.add_argument("--token", help="bearer token for --server (default: $TABLEWATCH_INGEST_TOKEN); "
                                      "exit 3 when the server refuses it")
    push.set_defaults(handler=cmd_push)

    gateway_parser = commands.add_parser("gateway", help="serve a store over another system's wire protocol")
    gateway_commands = gateway_parser.add_subparsers(dest="gateway_command", required=True, metavar="PROTOCOL")
    hbase = gateway_commands.add_parser("hbase-thrift", help="the HBase Thrift v1 API (happybase) over a store")
    hbase.add_argument("--store", help="store URL to serve (default: $TABLEWATCH_STORE, else ./tablewatch.db)")
    hbase.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    hbase.add_argument("--port", type=_port, default=9090, help="port to listen on (default: 9090; 0 picks a free one)")
    hbase.add_argument("--transport", choices=["buffered", "framed"], default="buffered",
                       help="Thrift transport; clients must use the same (default: buffered)")
    hbase.add_argument("--protocol", choices=["binary", "compact"], default="binary",
                       help="Thrift protocol; clients must use the same (default: binary)")
    hbase.set_defaults(handler=cmd_gateway_hbase_thrift)

    from tablewatch.alerts import check as alerts_check

    alerts = commands.add_parser("alerts", help="alert rules: check a rules file, run the rules")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", required=True, metavar="SUBCOMMAND")
    alerts_check.add_commands(alerts_commands)

    from tablewatch.alerts.commands import add_commands as add_alert_commands

    add_alert_commands(commands)  # run, status, silence (into "alerts") and notify

    from tablewatch.dashboard.command import add_commands as add_dashboard_commands

    add_dashboard_commands(commands, _port)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (`tablewatch store info --json | head -1`): not an
        # error of ours. Point stdout at /dev/null so the exit flush is quiet.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the signal
    except TablewatchError as e:
        print(f"tablewatch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
