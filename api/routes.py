"""The blueprints: the singleton starter under /api and the management API.

The management API mirrors Durable Functions' built-in HTTP API under
/runtime/webhooks/durabletask; see the contract for codes and fields.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from singleton import (
    IfFinished,
    IfLive,
    InstanceNotFound,
    OrchestrationClient,
    OrchestrationStatus,
    RuntimeStatus,
    StepHistory,
)

from . import inputs, urls
from .errors import ApiError
from .openapi import DOCUMENT

EXTENSION = "singleton"
CONTINUATION_HEADER = "x-ms-continuation-token"
IDEMPOTENCY_HEADER = "Idempotency-Key"
LIVE_RETRY_AFTER = 5
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A start that waits holds a web worker: keep it below gunicorn's default 30 s timeout.
MAX_WAIT_SECONDS = 20.0
DEFAULT_POLLING_INTERVAL = 1.0
MIN_POLLING_INTERVAL = 0.05

starter = Blueprint("starter", __name__, url_prefix="/api")
management = Blueprint("management", __name__, url_prefix=urls.WEBHOOK_PREFIX)


def _client() -> OrchestrationClient:
    return current_app.extensions[EXTENSION]


def _json(value: Any, status: int = 200) -> Response:
    response = current_app.json.response(value)
    response.status_code = status
    return response


def _empty(status: int) -> Response:
    response = Response(b"", status)
    del response.headers["Content-Type"]  # an empty body is not HTML
    return response


# -- starting -------------------------------------------------------------------
@starter.post("/orchestrators/<function_name>")
@starter.post("/orchestrators/<function_name>/<path:instance_id>")
@management.post("/orchestrators/<function_name>")
@management.post("/orchestrators/<function_name>/<path:instance_id>")
def start(function_name: str, instance_id: str | None = None) -> Response:
    """Start `function_name` as a singleton: 202 check-status, or 200 if it completes in time."""
    timeout = inputs.number("timeout", 0.0, MAX_WAIT_SECONDS)
    interval = inputs.number("pollingInterval", MIN_POLLING_INTERVAL, MAX_WAIT_SECONDS)
    policies = {
        "if_live": inputs.choice("ifLive", [p.value for p in IfLive]),
        "if_finished": inputs.choice("ifFinished", [p.value for p in IfFinished]),
        "request_id": request.headers.get(IDEMPOTENCY_HEADER) or None,
    }
    body = inputs.json_body()
    instance_id = _client().start_new(function_name, instance_id, body, **policies)
    if timeout:
        done = _wait(instance_id, timeout, interval or DEFAULT_POLLING_INTERVAL)
        if done is not None and done.runtime_status is RuntimeStatus.COMPLETED:
            return _json(done.output)
    return urls.check_status_response(instance_id)


def _wait(instance_id: str, timeout: float, interval: float) -> OrchestrationStatus | None:
    deadline = time.monotonic() + timeout
    while True:
        status = _client().get_status(instance_id, show_input=False)
        remaining = deadline - time.monotonic()
        if status is None or status.runtime_status.is_terminal or remaining <= 0:
            return status
        time.sleep(min(interval, remaining))


# -- reading --------------------------------------------------------------------
@management.get("/instances/<instance_id>")
def get_status(instance_id: str) -> Response:
    """Return one instance's status: 202 while live, 200 when finished, 404 when unknown."""
    show_input = inputs.flag("showInput", True)
    show_history = inputs.flag("showHistory", False)
    show_output = inputs.flag("showHistoryOutput", False)
    fail_as_500 = inputs.flag("returnInternalServerErrorOnFailure", False)
    status = _client().get_status(
        instance_id, show_input=show_input, show_history=show_history, show_history_output=show_output
    )
    if status is None:
        raise InstanceNotFound(instance_id)
    body = status_body(status)
    if status.history is not None:
        body["historyEvents"] = history_events(status, show_output)
    if status.runtime_status.is_live:
        response = _json(body, 202)
        response.headers["Location"] = request.url
        response.headers["Retry-After"] = str(LIVE_RETRY_AFTER)
        return response
    failed = status.runtime_status is RuntimeStatus.FAILED
    return _json(body, 500 if failed and fail_as_500 else 200)


@management.get("/instances")
@management.get("/instances/")
def list_instances() -> Response:
    """Return one page of statuses, newest first; the next page's token in a header."""
    filters = {
        "created_time_from": inputs.moment("createdTimeFrom"),
        "created_time_to": inputs.moment("createdTimeTo"),
        "instance_id_prefix": request.args.get("instanceIdPrefix") or None,
        "page_size": inputs.integer("top", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        "show_input": inputs.flag("showInput", True),
        "continuation_token": request.headers.get(CONTINUATION_HEADER) or None,
    }
    page = _client().get_status_by(runtime_status=inputs.runtime_statuses(), **filters)
    response = _json([status_body(s) for s in page.instances])
    response.headers[CONTINUATION_HEADER] = page.continuation_token or ""
    return response


def status_body(status: OrchestrationStatus) -> dict[str, Any]:
    """Return the status JSON of the contract, times as ISO-8601 UTC."""
    return {
        "name": status.name,
        "instanceId": status.instance_id,
        "runtimeStatus": status.runtime_status.value,
        "input": status.input,
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": _iso(status.created_time),
        "lastUpdatedTime": _iso(status.last_updated_time),
    }


def history_events(status: OrchestrationStatus, show_output: bool) -> list[dict[str, Any]]:
    """Return Durable Functions-style history: the start, one entry per step, the end."""
    events: list[dict[str, Any]] = [{
        "EventType": "ExecutionStarted", "FunctionName": status.name,
        "Timestamp": _iso_ms(status.created_time),
    }]
    events += [_step_event(step, show_output) for step in status.history or []]
    if status.runtime_status.is_terminal:
        end = {"EventType": "ExecutionCompleted", "OrchestrationStatus": status.runtime_status.value,
               "Timestamp": _iso_ms(status.last_updated_time)}
        if show_output:
            end["Result"] = status.output
        events.append(end)
    return events


def _step_event(step: StepHistory, show_output: bool) -> dict[str, Any]:
    event = {"EventType": f"Task{step.outcome}", "FunctionName": step.name, "TaskId": step.task_id,
             "ScheduledTime": _iso_ms(step.started), "Timestamp": _iso_ms(step.ended)}
    if show_output:
        event["Result"] = step.result
    return event


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- managing -------------------------------------------------------------------
@management.post("/instances/<instance_id>/terminate")
def terminate(instance_id: str) -> Response:
    """Terminate the live run: 202; 404 unknown; 410 already finished."""
    _client().terminate(instance_id, request.args.get("reason"))
    return _empty(202)


@management.delete("/instances/<instance_id>")
def purge(instance_id: str) -> Response:
    """Delete a finished instance's record: 200; 404 unknown; 409 still live."""
    if _client().purge_instance_history(instance_id) == 0:
        raise InstanceNotFound(instance_id)
    return _json({"instancesDeleted": 1})


@management.delete("/instances")
@management.delete("/instances/")
def purge_many() -> Response:
    """Delete the finished records created in a time range: 200 with the count; 404 if none."""
    created_from = inputs.moment("createdTimeFrom")
    if created_from is None:
        raise ApiError(400, "missing_query_parameter", "The query parameter 'createdTimeFrom' is required.")
    deleted = _client().purge_instance_history_by(
        created_time_from=created_from,
        created_time_to=inputs.moment("createdTimeTo"),
        runtime_status=inputs.runtime_statuses(),
    )
    if deleted == 0:
        raise ApiError(404, "no_instances_deleted", "No instances matched the filter; none was deleted.")
    return _json({"instancesDeleted": deleted})


@management.post("/instances/<instance_id>/raiseEvent/<event_name>")
def raise_event(instance_id: str, event_name: str) -> Response:
    """Send an event (JSON body) to the instance: 202; 400 not JSON; 404 unknown; 410 finished."""
    _client().raise_event(instance_id, event_name, inputs.json_body())
    return _empty(202)


@management.post("/instances/<instance_id>/suspend")
def suspend(instance_id: str) -> Response:
    """Suspend the live run: 202; 404 unknown; 409 already suspended; 410 finished."""
    _client().suspend(instance_id, request.args.get("reason"))
    return _empty(202)


@management.post("/instances/<instance_id>/resume")
def resume(instance_id: str) -> Response:
    """Resume a suspended run: 202; 404 unknown; 409 not suspended; 410 finished."""
    _client().resume(instance_id, request.args.get("reason"))
    return _empty(202)


@management.post("/instances/<instance_id>/restart")
def restart(instance_id: str) -> Response:
    """Start the orchestrator again with the original input: 202 check-status of the new run."""
    new_id = inputs.flag("restartWithNewInstanceId", True)
    return urls.check_status_response(_client().restart(instance_id, new_instance_id=new_id))


# -- the API's own description -------------------------------------------------
@starter.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document of every route."""
    return _json(DOCUMENT)
