"""``tablewatch alerts run|status|silence`` and ``tablewatch notify``.

Registered by :func:`add_commands`; nothing heavy is imported until a handler
runs (``tablewatch --help`` stays light).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

DEFAULT_STATUS_MAX_AGE_S = 300.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration like 90, 30s, 5m, 2h or 7d (got {text!r})")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _matcher(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"must be LABEL=VALUE (got {text!r})")
    return name.strip(), value


def _utc(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _alerts_parser(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``alerts`` command's subcommands (``alerts check`` lives in another
    module: whichever registers first creates ``alerts``, the other adds to it)."""
    parser = commands.choices.get("alerts")
    if parser is None:
        parser = commands.add_parser("alerts", help="alert rules, the runner, silences")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="alerts_command", required=True, metavar="SUBCOMMAND")


def add_commands(commands: argparse._SubParsersAction) -> None:
    store_help = "store URL (default: $TABLEWATCH_STORE, else ./tablewatch.db)"
    alerts = _alerts_parser(commands)

    run = alerts.add_parser("run", help="evaluate the rules on their schedules and notify (Slack: $SLACK_*)")
    run.add_argument("--rules", required=True, metavar="FILE", help="the rules file (YAML)")
    run.add_argument("--store", help=store_help)
    run.add_argument("--every", type=_duration, default=60.0, metavar="SECONDS",
                     help="the runner's tick, and the schedule of rules without every/cron (default: 60)")
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument("--lease-ttl", type=_duration, metavar="SECONDS",
                     help="how long a runner that stopped answering keeps the lease before a standby "
                          "takes over (default: 3 ticks, at least 30 s)")
    run.set_defaults(handler=cmd_alerts_run)

    status = alerts.add_parser("status", help="firing alerts and the last cycle; exit 1 when the runner is stale")
    status.add_argument("--store", help=store_help)
    status.add_argument("--max-age", type=_duration, default=DEFAULT_STATUS_MAX_AGE_S, metavar="SECONDS",
                        help=f"the last cycle must be younger than this (default: {DEFAULT_STATUS_MAX_AGE_S:g})")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_alerts_status)

    silence = alerts.add_parser("silence", help="silence alerts by label for a while")
    silence_commands = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = silence_commands.add_parser("add", help="add a silence")
    add.add_argument("--match", type=_matcher, action="append", required=True, metavar="LABEL=VALUE",
                     help="a label matcher (repeatable; alertname=RULE matches a rule)")
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", type=_duration, metavar="DURATION", help="e.g. 2h, 1d")
    until.add_argument("--until", metavar="TIME", help="ISO-8601 UTC or epoch seconds")
    add.add_argument("--comment", default="")
    add.add_argument("--by", default=os.environ.get("USER", ""), help="who (default: $USER)")
    add.add_argument("--store", help=store_help)
    add.set_defaults(handler=cmd_silence_add)
    listing = silence_commands.add_parser("list", help="active silences (--all: expired too)")
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--store", help=store_help)
    listing.set_defaults(handler=cmd_silence_list)
    expire = silence_commands.add_parser("expire", help="end a silence now")
    expire.add_argument("silence_id", metavar="ID")
    expire.add_argument("--store", help=store_help)
    expire.set_defaults(handler=cmd_silence_expire)

    notify = commands.add_parser("notify", help="send a message to Slack through the alert outbox")
    notify.add_argument("text", metavar="TEXT")
    notify.add_argument("--field", type=_matcher, action="append", default=[], metavar="NAME=VALUE",
                        help="a field shown with the message (repeatable)")
    notify.add_argument("--title")
    notify.add_argument("--severity", choices=["info", "warning", "critical"], default="info")
    notify.add_argument("--channel")
    target = notify.add_mutually_exclusive_group()
    target.add_argument("--store", help=store_help)
    target.add_argument("--server", help="a tablewatch server URL (POST /api/v1/notify)")
    notify.add_argument("--token", help="bearer token for --server (default: $TABLEWATCH_INGEST_TOKEN)")
    notify.set_defaults(handler=cmd_notify)


# -- handlers ------------------------------------------------------------------------------


def cmd_alerts_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tablewatch.alerts.engine import Engine
    from tablewatch.alerts.rules import load_rules
    from tablewatch.alerts.slack import notifier_from_env
    from tablewatch.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rules = load_rules(args.rules)
    notifier = notifier_from_env(os.environ)
    with open_store(args.store) as store:
        engine = Engine(rules, store, notifier=notifier, every_s=args.every, lease_ttl_s=args.lease_ttl)
        if args.once:
            try:
                report = engine.cycle()
            finally:
                engine.release()  # the next --once (or a standby) need not wait for the lease to expire
            print(f"{report.role}: {report.rules} rules evaluated, {report.enqueued} notifications, "
                  f"{report.sent} sent, {report.failed} failed")
            for error in report.errors:
                print(f"error: {error}", file=sys.stderr)
            return 0
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        print(f"tablewatch alerts: runner {engine.runner} on {store.url}, {len(rules.rules)} rules, "
              f"tick {args.every:g} s", flush=True)
        engine.run(stop)
    return 0


def cmd_alerts_status(args: argparse.Namespace) -> int:
    from tablewatch.alerts.state import AlertState
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        state = AlertState(store)
        alerts = state.alerts(["pending", "firing"])
        cycle = state.last_cycle()
        lease = state.lease()
    now = time.time()
    age = now - cycle["ended_at"] if cycle else None
    healthy = age is not None and age <= args.max_age
    if args.json:
        print(json.dumps({"healthy": healthy, "last_cycle": cycle, "last_cycle_age_s": age, "lease": lease,
                          "alerts": [{"rule": a.rule, "labels": a.labels, "state": a.state, "summary": a.summary,
                                      "active_at": a.active_at, "fired_at": a.fired_at} for a in alerts]},
                         indent=2))
    else:
        if cycle is None:
            print("last cycle: never (no runner has completed a cycle on this store)")
        else:
            print(f"last cycle: ended {_utc(cycle['ended_at'])} UTC ({age:.0f} s ago) by {cycle['runner']}, "
                  f"{cycle['rules']} rules, {len(cycle['errors'])} errors")
            for error in cycle["errors"]:
                print(f"  error: {error}")
        print(f"{len(alerts)} alerts pending or firing")
        for a in alerts:
            labels = ",".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
            print(f"  {a.state:<8} {a.rule:<24} {labels:<40} since {_utc(a.fired_at or a.active_at)}  {a.summary}")
    if not healthy:
        print(f"unhealthy: the last cycle is older than {args.max_age:g} s" if cycle else "unhealthy: no cycle yet",
              file=sys.stderr)
        return 1
    return 0


def _epoch(text: str) -> float:
    from tablewatch.errors import ValidationError

    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("--until", text, "must be ISO-8601 (e.g. 2026-12-01T18:00:00Z) or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def cmd_silence_add(args: argparse.Namespace) -> int:
    from tablewatch.alerts.state import AlertState
    from tablewatch.store import open_store

    ends = time.time() + args.duration if args.duration else _epoch(args.until)
    with open_store(args.store) as store:
        silence = AlertState(store).add_silence(dict(args.match), ends, created_by=args.by, comment=args.comment)
    print(f"silence {silence.id} until {_utc(silence.ends_at)} UTC")
    return 0


def cmd_silence_list(args: argparse.Namespace) -> int:
    from tablewatch.alerts.state import AlertState
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        silences = AlertState(store).silences(include_expired=args.all)
    now = time.time()
    print(f"{'id':<16} {'ends (UTC)':<20} {'state':<8} {'by':<12} matchers / comment")
    for s in silences:
        matchers = ",".join(f"{k}={v}" for k, v in sorted(s.matchers.items()))
        state = "active" if s.starts_at <= now < s.ends_at else ("expired" if s.ends_at <= now else "pending")
        print(f"{s.id:<16} {_utc(s.ends_at):<20} {state:<8} {s.created_by:<12} {matchers}"
              f"{'  # ' + s.comment if s.comment else ''}")
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    from tablewatch.alerts.state import AlertState
    from tablewatch.store import open_store

    with open_store(args.store) as store:
        AlertState(store).expire_silence(args.silence_id)
    print(f"silence {args.silence_id} expired")
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    fields = dict(args.field)
    if args.server:
        return _notify_server(args, fields)
    from tablewatch.alerts.notifications import notify

    sent = notify(args.text, fields, title=args.title, severity=args.severity, channel=args.channel, store=args.store)
    print("sent" if sent else "queued in the outbox (Slack did not accept it yet)")
    return 0


def _notify_server(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    import urllib.error
    import urllib.request

    token = args.token or os.environ.get("TABLEWATCH_INGEST_TOKEN")
    body = json.dumps({"text": args.text, "fields": fields, "title": args.title, "severity": args.severity,
                       "channel": args.channel}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(args.server.rstrip("/") + "/api/v1/notify", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(json.loads(response.read())["status"])
            return 0
    except urllib.error.HTTPError as e:
        print(f"tablewatch: error: server answered {e.code}: {e.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as e:
        print(f"tablewatch: error: server unreachable: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
