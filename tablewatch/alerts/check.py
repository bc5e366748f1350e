"""``tablewatch alerts check FILE``: validate a rules file.

Exit 0 and one line per rule, or 2 and every problem as
``file:line: rules[i] ('name').field: problem``. Imported while the command
line is built: nothing heavy at import (pydantic and the rules load in the
handler).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any


def cmd_check(args: argparse.Namespace) -> int:
    from tablewatch.alerts.rules import describe, load_rules
    from tablewatch.errors import RuleError

    try:
        rule_file = load_rules(args.file)
    except RuleError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{args.file}: {_count(len(e.problems), 'problem')}", file=sys.stderr)
        return 2
    kinds = Counter(rule.kind for rule in rule_file.rules)
    parts = [_count(len(rule_file.rules), "rule")
             + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else "")]
    if rule_file.actions:
        parts.append(_count(len(rule_file.actions), "action"))
    if rule_file.silences:
        parts.append(_count(len(rule_file.silences), "silence"))
    if rule_file.slack is not None:
        parts.append(f"slack channel {rule_file.slack.channel or '$SLACK_CHANNEL'}")
    print(f"{args.file}: OK, {', '.join(parts)}")
    for rule in rule_file.rules:
        print(f"  {describe(rule)}")
    return 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def add_commands(alerts_commands: Any) -> None:
    """Add ``check`` to the ``tablewatch alerts`` subcommands."""
    check = alerts_commands.add_parser("check", help="validate a rules file: exit 2 naming file:line, rule and field")
    check.add_argument("file", metavar="FILE", help="the rules file (YAML)")
    check.set_defaults(handler=cmd_check)
