"""The dashboard's actions: JSON requests from its own pages, checked server-side.

Every action needs an operator session and the session's CSRF token (see
``blueprint.require_action``). An action applies to the instance IDs given, or to
everything matching the list filters (at most MAX_BATCH instances per request; live
ones for terminate, finished ones for purge), and answers how many succeeded and why
the others failed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Response, jsonify, request
from werkzeug.datastructures import MultiDict

from singleton import (
    InstanceNotFound,
    OrchestrationClient,
    RuntimeStatus,
    ServiceUnavailable,
    SingletonError,
    validate_event_name,
)

from .blueprint import Refused, context, dashboard, require_action
from .filters import Filters, ListQueryError, each_matching

MAX_BATCH = 1000
MAX_REASON = 1000


def _terminate(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    client.terminate(instance_id, _reason(body))


def _suspend(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    client.suspend(instance_id, _reason(body))


def _resume(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    client.resume(instance_id, _reason(body))


def _purge(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    if client.purge_instance_history(instance_id) == 0:
        raise InstanceNotFound(instance_id)


def _raise_event(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    client.raise_event(instance_id, body["eventName"], body["data"])


def _restart(client: OrchestrationClient, instance_id: str, body: dict[str, Any]) -> Any:
    return client.restart(instance_id, new_instance_id=not body.get("sameId"))


ACTIONS: dict[str, Callable[[OrchestrationClient, str, dict[str, Any]], Any]] = {
    "terminate": _terminate, "suspend": _suspend, "resume": _resume, "purge": _purge,
    "raise-event": _raise_event, "restart": _restart,
}
# Actions that may apply to every instance matching the list's filters.
BATCH_ACTIONS = {"terminate", "purge"}


@dashboard.post("/actions/<action>")
def act(action: str) -> Response:
    """Run `action` on each target instance; report successes and failures by reason."""
    require_action()
    if action not in ACTIONS:
        raise Refused(404, "unknown_action", f"There is no action {action!r}.")
    body = _body(action)
    ids, more = _targets(action, body)
    client = context().client
    succeeded, failed, started = 0, [], []
    for instance_id in ids:
        try:
            result = ACTIONS[action](client, instance_id, body)
        except ServiceUnavailable:
            raise  # the blueprint answers 503: nothing else would work either
        except SingletonError as exc:
            failed.append({"instanceId": instance_id, "code": exc.code, "message": str(exc)})
            continue
        succeeded += 1
        if isinstance(result, str):
            started.append(result)
    reasons = Counter(f["code"] for f in failed)
    return jsonify({"action": action, "succeeded": succeeded, "failed": failed,
                    "failedByReason": dict(reasons), "moreRemain": more, "started": started})


def _body(action: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refused(400, "invalid_body", "The action expects a JSON object.")
    if action == "raise-event":
        try:
            validate_event_name(body.get("eventName"))
            body["data"] = json.loads(body.get("data") or "null")
        except (SingletonError, ValueError, TypeError) as exc:
            raise Refused(400, "invalid_event", f"Invalid event: {exc}") from None
    return body


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is None or reason == "":
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise Refused(400, "invalid_reason", f"The reason must be text of at most {MAX_REASON} characters.")
    return reason


def _targets(action: str, body: dict[str, Any]) -> tuple[list[str], bool]:
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
            raise Refused(400, "invalid_ids", "'ids' must be a non-empty list of instance IDs.")
        if len(ids) > MAX_BATCH:
            raise Refused(400, "too_many", f"At most {MAX_BATCH} instances per action.")
        return list(dict.fromkeys(ids)), False
    if action not in BATCH_ACTIONS or not isinstance(body.get("filter"), str):
        raise Refused(400, "invalid_targets", "Give 'ids', or a 'filter' query for terminate and purge.")
    try:
        pairs = parse_qsl(body["filter"].lstrip("?"), keep_blank_values=False)
        filters = Filters.parse(MultiDict(pairs), datetime.now(UTC))
    except ListQueryError as exc:
        raise Refused(400, "invalid_filter", str(exc)) from None
    # Over a filter, terminate aims at the live instances and purge at the finished ones
    # only; an instance that changed status meanwhile is reported as a failure.
    live = action == "terminate"
    statuses = tuple(s for s in filters.statuses or RuntimeStatus if s.is_live == live)
    if not statuses:
        return [], False
    return each_matching(context().client, replace(filters, statuses=statuses), MAX_BATCH)

