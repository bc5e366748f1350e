"""Retrain actions: what the Retrain (and Train!) button runs.

An action is declared under ``actions:`` in the rules file (validated by
:mod:`tablewatch.alerts.rules`) and run here, once per incident (the caller
claims the incident first). Three kinds, one small protocol — ``run(spec,
context) -> ActionResult``:

- ``command``: a program (a list of arguments, or a string run by the shell)
  with the alert in its environment (``TABLEWATCH_RULE``,
  ``TABLEWATCH_INCIDENT``, ``TABLEWATCH_LABELS`` as JSON, ``TABLEWATCH_USER``,
  and one ``TABLEWATCH_LABEL_<NAME>`` per label); killed after ``timeout``;
- ``webhook``: an HTTP request whose JSON body is the context;
- ``celery``: a task sent by name (``send_task``) to a broker, with the
  configured ``args``/``kwargs`` and ``alert=<the context>`` added to kwargs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tablewatch.errors import ValidationError

OUTPUT_LIMIT = 2000


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    detail: str


def _get(spec: Any, name: str, default: Any = None) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name, default)
    return getattr(spec, name, default)


def run_action(spec: Any, context: Mapping[str, Any]) -> ActionResult:
    """Run one action (an ``ActionSpec`` of the rules file, or a mapping with
    the same fields). ``context``: ``rule``, ``incident_id``, ``labels``,
    ``user``, ``action`` and whatever else describes the alert. Never raises
    for the action's own failure: the result says what happened."""
    kind = _get(spec, "kind")
    runner = {"command": _command, "webhook": _webhook, "celery": _celery}.get(kind)
    if runner is None:
        raise ValidationError("kind", kind, "must be command, webhook or celery")
    try:
        return runner(spec, dict(context))
    except Exception as e:
        return ActionResult(False, f"{type(e).__name__}: {e}"[:OUTPUT_LIMIT])


def _environment(context: Mapping[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    labels = context.get("labels") or {}
    env.update({
        "TABLEWATCH_RULE": str(context.get("rule", "")),
        "TABLEWATCH_INCIDENT": str(context.get("incident_id", "")),
        "TABLEWATCH_USER": str(context.get("user", "")),
        "TABLEWATCH_ACTION": str(context.get("action", "")),
        "TABLEWATCH_LABELS": json.dumps(labels, sort_keys=True),
    })
    for name, value in labels.items():
        env["TABLEWATCH_LABEL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()] = str(value)
    return env


def _command(spec: Any, context: dict[str, Any]) -> ActionResult:
    command = _get(spec, "command")
    timeout = float(_get(spec, "timeout", 600))
    shell = isinstance(command, str)
    try:
        done = subprocess.run(command, shell=shell, env=_environment(context), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ActionResult(False, f"command timed out after {timeout:g} s")
    except OSError as e:
        return ActionResult(False, f"command could not start: {e}")
    output = (done.stdout + done.stderr).strip()[-OUTPUT_LIMIT:]
    if done.returncode != 0:
        return ActionResult(False, f"command exited {done.returncode}: {output}")
    return ActionResult(True, f"command exited 0{': ' + output if output else ''}")


def _webhook(spec: Any, context: dict[str, Any]) -> ActionResult:
    body = json.dumps(context, default=str).encode()
    headers = {"Content-Type": "application/json", **dict(_get(spec, "headers", {}) or {})}
    request = urllib.request.Request(_get(spec, "url"), data=body, headers=headers,
                                     method=str(_get(spec, "method", "POST")).upper())
    try:
        with urllib.request.urlopen(request, timeout=float(_get(spec, "timeout", 10))) as response:
            text = response.read(OUTPUT_LIMIT).decode("utf-8", "replace")
            return ActionResult(True, f"HTTP {response.status}: {text}")
    except urllib.error.HTTPError as e:
        return ActionResult(False, f"HTTP {e.code}: {e.read(OUTPUT_LIMIT).decode('utf-8', 'replace')}")
    except (urllib.error.URLError, OSError) as e:
        return ActionResult(False, f"webhook unreachable: {getattr(e, 'reason', e)}")


def _celery(spec: Any, context: dict[str, Any]) -> ActionResult:
    try:
        from celery import Celery
    except ImportError as e:
        return ActionResult(False, f"celery is not installed (pip install 'tablewatch[celery]'): {e}")
    app = Celery("tablewatch-actions", broker=_get(spec, "broker"))
    try:
        kwargs = {**dict(_get(spec, "kwargs", {}) or {}), "alert": context}
        options = {"queue": _get(spec, "queue")} if _get(spec, "queue") else {}
        result = app.send_task(_get(spec, "task"), args=list(_get(spec, "args", []) or []), kwargs=kwargs, **options)
        return ActionResult(True, f"celery task {_get(spec, 'task')} sent: {result.id}")
    finally:
        app.close()
