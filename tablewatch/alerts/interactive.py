"""HTTP routes of ``tablewatch server`` for alerts: Slack's buttons and notify.

::

    POST /slack/actions   Slack interactivity (Retrain, Snooze 24 h, Acknowledge, Train!, Nope!)
    POST /api/v1/notify   {"text": ..., "fields": {...}, "title": ..., "severity": ..., "channel": ...}

``/slack/actions`` checks Slack's request signature (``X-Slack-Signature``,
``X-Slack-Request-Timestamp``, the signing secret, a 5-minute window) and
answers 401 to anything forged, unsigned or stale, 400 to a payload it cannot
read or an action it does not know, and 200 at once to the rest: the work (the
retrain action, the message update) runs after the answer, because Slack gives
up after 3 seconds. The rule's action runs once per incident however many
times, from however many messages, the button is clicked (a ``check_and_set``
claim per incident); every click is recorded with who, what, when and what came
of it; the message is rewritten through the click's ``response_url`` (or
``chat.update``).

``/api/v1/notify`` (bearer token, like the ingest API) enqueues a message in
the alert outbox and tries to send it at once: 202 either way, nothing lost.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from tablewatch.extras import require

require("starlette", "server", "Slack's buttons and /api/v1/notify")
from starlette.background import BackgroundTask  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tablewatch.alerts.actions import run_action  # noqa: E402
from tablewatch.alerts.delivery import Delivery
from tablewatch.alerts.notifications import NOTE_FIELDS, check_note
from tablewatch.alerts.slack import (ACKNOWLEDGE, BUTTONS, NOPE, RETRAIN, SNOOZE, SNOOZE_S, TRAIN, Message, Notifier,
                                     NotifierError, respond)
from tablewatch.alerts.state import ActionRecord, AlertState, NotificationRecord
from tablewatch.errors import ValidationError

log = logging.getLogger("tablewatch.alerts")

MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, field: str, problem: str) -> JSONResponse:
    return JSONResponse({"error": problem, "field": field}, status_code=status)


class AlertRoutes:
    """The routes, over one :class:`AlertState`. ``rules``: the rules file
    (its ``actions:`` are what Retrain runs; without it, Retrain answers that
    no action is configured); ``notifier``: where messages and updates go."""

    def __init__(self, state: AlertState, notifier: Notifier, *, signing_secret: str | None,
                 token: str | None = None, rules: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.notifier = notifier
        self.rules = rules
        self.clock = clock
        self.token = token.encode() if token else None
        self.verifier = None
        if signing_secret:
            verifier = require("slack_sdk.signature", "alerts", "checking Slack's signatures").SignatureVerifier
            self.verifier = verifier(signing_secret)

    def routes(self) -> list[Route]:
        return [Route("/slack/actions", self.slack_actions, methods=["POST"]),
                Route("/api/v1/notify", self.notify, methods=["POST"])]

    # -- Slack interactivity -----------------------------------------------------------

    async def slack_actions(self, request: Request) -> Response:
        if self.verifier is None:
            return _error(503, "SLACK_SIGNING_SECRET", "interactivity is off: the server has no signing secret")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "body", f"over {MAX_BODY_BYTES} bytes")
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        if not timestamp or not signature:
            return _error(401, "x-slack-signature", "unsigned request")
        try:
            valid = self.verifier.is_valid(body, timestamp, signature)
        except ValueError:  # a timestamp that is not a number
            valid = False
        if not valid:
            return _error(401, "x-slack-signature", "invalid or stale signature")
        try:
            click = _parse_click(body)
        except _BadPayload as e:
            return _error(400, e.field, e.problem)
        record = await run_in_threadpool(self.state.notification, click["value"])
        if record is None:
            return _error(400, "actions[0].value", f"no such message: {click['value']!r}")
        return Response(status_code=200, background=BackgroundTask(self.handle_click, record, click))

    def handle_click(self, record: NotificationRecord, click: Mapping[str, Any]) -> None:
        """The slow part of a click (after Slack has its answer)."""
        try:
            result, detail = self._act(record, click)
            self._update_message(record, click, result, detail)
        except Exception:
            log.exception("handling %s on %s failed", click.get("action_id"), record.id)

    def _act(self, record: NotificationRecord, click: Mapping[str, Any]) -> tuple[str, str]:
        action_id, user, now = click["action_id"], click["user"], self.clock()
        incidents = [i for i in (self.state.incident(iid) for iid in record.incident_ids or [record.incident_id]) if i]
        result, detail = "no-action", ""
        if action_id in (RETRAIN, TRAIN):
            result, detail = self._retrain(record, incidents, click)
            if action_id == TRAIN:
                for incident in incidents:
                    self.state.acknowledge(incident.incident_id, user, now)
                    self.state.update_incident(incident.incident_id, state="resolved", resolved_at=now)
        elif action_id == SNOOZE:
            until = now + SNOOZE_S
            for incident in incidents:
                self.state.add_silence({"alertname": incident.rule, **incident.labels}, until, created_by=user,
                                       comment=f"Snooze 24 h from Slack ({incident.incident_id})", starts_at=now)
                self.state.update_incident(incident.incident_id, snoozed_until=until)
            result, detail = "snoozed", f"until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(until))}"
        elif action_id == ACKNOWLEDGE:
            for incident in incidents:
                self.state.acknowledge(incident.incident_id, user, now)
            result = "acknowledged"
        elif action_id == NOPE:
            for incident in incidents:
                self.state.acknowledge(incident.incident_id, user, now)
                self.state.update_incident(incident.incident_id, state="resolved", resolved_at=now)
            result = "declined"
        for incident in incidents or [None]:
            self.state.record_action(ActionRecord(incident.incident_id if incident else (record.incident_id or ""),
                                                  action_id, user, now, result, detail))
        return result, detail

    def _retrain(self, record: NotificationRecord, incidents: list, click: Mapping[str, Any]) -> tuple[str, str]:
        name, spec = self._action_of(record.rule)
        if spec is None:
            return "no-action", (f"action {name!r} is not in the server's rules file" if name
                                 else "no action is configured for this rule")
        claimed = [i for i in incidents if self.state.claim(f"action/{i.incident_id}",
                                                            {"action": name, "user": click["user"]})]
        if not claimed:
            return "already-done", "the action already ran for this incident"
        first = claimed[0]
        context = {"rule": first.rule, "incident_id": first.incident_id, "labels": first.labels,
                   "user": click["user"], "action": name, "summary": first.summary,
                   "incidents": [i.incident_id for i in claimed], "dashboard_path": first.dashboard_path}
        outcome = run_action(spec, context)
        return ("ran" if outcome.ok else "failed"), outcome.detail

    def _action_of(self, rule_name: str | None) -> tuple[str | None, Any]:
        if self.rules is None or rule_name is None:
            return None, None
        rule = next((r for r in self.rules.rules if r.name == rule_name), None)
        name = getattr(rule, "action", None)
        return name, (self.rules.actions.get(name) if name else None)

    def _update_message(self, record: NotificationRecord, click: Mapping[str, Any], result: str, detail: str) -> None:
        words = {"ran": "Retrain ran", "failed": "Retrain failed", "already-done": "Retrain already ran",
                 "no-action": "No retrain action configured", "snoozed": "Snoozed 24 h",
                 "acknowledged": "Acknowledged", "declined": "Declined (Nope!)"}
        what = words.get(result, result)
        if click["action_id"] == TRAIN and result in ("ran", "failed", "already-done"):
            what = what.replace("Retrain", "Training")
        note = f"*{what}* by <@{click['user']}> at {time.strftime('%H:%M:%S UTC', time.gmtime(self.clock()))}"
        if detail:
            note += f"\n```{detail[:500]}```"
        # the buttons that still mean something after this click
        if click["action_id"] in (TRAIN, NOPE):
            spent = set(BUTTONS)  # the question is answered
        else:
            spent = {ACKNOWLEDGE} if result == "acknowledged" else {RETRAIN} if result in ("ran", "already-done") else set()
        blocks = []
        for block in record.blocks:
            if block.get("type") == "actions":
                keep = [e for e in block.get("elements", []) if e.get("action_id") not in spent]
                if keep:
                    blocks.append({**block, "elements": keep})
            else:
                blocks.append(block)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:3000]}]})
        message = Message(f"{record.text} — {what} by {click['user']}", blocks)
        try:
            if click.get("response_url"):
                respond(click["response_url"], message)
            elif record.message_ts and self.notifier.can_update:
                self.notifier.update(record.message_channel or "", record.message_ts, message)
        except NotifierError as e:
            log.warning("could not update the message of %s: %s", record.id, e)

    # -- notify ------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        if self.token is None:
            return None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return JSONResponse({"error": "missing bearer token (Authorization: Bearer <token>)",
                                 "field": "authorization"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), self.token):
            return JSONResponse({"error": "invalid bearer token", "field": "authorization"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return None

    async def notify(self, request: Request) -> Response:
        refused = self._authorize(request)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "body", f"over {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body)
        except ValueError as e:
            return _error(400, "body", f"malformed JSON: {e}")
        if not isinstance(data, dict):
            return _error(400, "body", f"must be a JSON object, got {type(data).__name__}")
        try:
            note = check_note(**data)
        except TypeError as e:  # an unknown field
            return _error(400, "body", f"{e} (fields: {', '.join(NOTE_FIELDS)})")
        except ValidationError as e:
            return _error(400, e.field, e.problem)
        record = note.record(created_at=self.clock())
        await run_in_threadpool(self.state.enqueue, record)
        return JSONResponse({"id": record.id, "status": "queued"}, status_code=202,
                            background=BackgroundTask(self.deliver))

    def deliver(self) -> None:
        """Send the outbox: this message, and any left by an earlier outage
        (the server is a long-lived sender; a job's own notify is not)."""
        try:
            Delivery(self.state, self.notifier, clock=self.clock).deliver()
        except Exception:
            log.exception("delivering the outbox failed")


class _BadPayload(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _parse_click(body: bytes) -> dict[str, Any]:
    """action_id, value, user, response_url of a block_actions payload."""
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise _BadPayload("body", "must be a form with a payload field") from None
    if "payload" not in form:
        raise _BadPayload("payload", "is missing")
    try:
        payload = json.loads(form["payload"][0])
    except ValueError as e:
        raise _BadPayload("payload", f"is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise _BadPayload("payload", "must be a JSON object")
    if payload.get("type") != "block_actions":
        raise _BadPayload("payload.type", f"must be block_actions (got {payload.get('type')!r})")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise _BadPayload("payload.actions", "must be a non-empty list")
    action_id = actions[0].get("action_id")
    if action_id not in BUTTONS:
        raise _BadPayload("payload.actions[0].action_id", f"unknown action {action_id!r} (known: {', '.join(BUTTONS)})")
    value = actions[0].get("value")
    if not isinstance(value, str) or not value:
        raise _BadPayload("payload.actions[0].value", "must name the message")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise _BadPayload("payload.user.id", "is missing")
    response_url = payload.get("response_url")
    if response_url is not None and not (isinstance(response_url, str) and response_url.startswith("http")):
        raise _BadPayload("payload.response_url", "must be an http(s) URL")
    name = user.get("username") or user.get("name") or user["id"]
    return {"action_id": action_id, "value": value, "user": user["id"], "user_name": name,
            "response_url": response_url}


def routes_from_env(store: Any, env: Mapping[str, str], *, token: str | None, rules_path: str | None = None) -> list[Route]:
    """The alert routes as ``tablewatch server`` mounts them: the notifier
    from ``SLACK_*``, the signing secret, the rules file (``--rules`` or
    ``$TABLEWATCH_RULES``)."""
    from tablewatch.alerts.slack import SIGNING_SECRET_ENV, notifier_from_env

    rules = None
    path = rules_path or env.get("TABLEWATCH_RULES")
    if path:
        from tablewatch.alerts.rules import load_rules

        rules = load_rules(path)
    routes = AlertRoutes(AlertState(store), notifier_from_env(env), signing_secret=env.get(SIGNING_SECRET_ENV),
                         token=token, rules=rules)
    return routes.routes()

