"""The blueprints: the singleton starter under /api and the management API.

The management API mirrors Durable Functions' built-in HTTP API under
/runtime/webhooks/durabletask; see the contract for codes and fields.
"""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response, current_app, request

from singleton import (
    IfFinished,
    IfLive,
    InstanceNotFound,
    InvalidTransition,
    OrchestrationClient,
    OrchestrationStatus,
    RuntimeStatus,
    WaitTimeout,
)
from singleton.client import StartedRun
from singleton.errors import ErrorCategory, RunReplaced

from . import cors, errors, inputs, urls
from .errors import ApiError
from .openapi import DOCUMENT
from .responses import empty_response, json_response

EXTENSION = "singleton"
BODY_LIMIT_EXTENSION = "singleton.max_content_length"
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
BLUEPRINTS = frozenset({starter.name, management.name})


def _client() -> OrchestrationClient:
    return current_app.extensions[EXTENSION]


def _limit_body() -> None:
    # Per request, so that inside a larger app the API's limit binds only its routes.
    request.max_content_length = current_app.extensions[BODY_LIMIT_EXTENSION]


for _blueprint in (starter, management):
    errors.install(_blueprint)  # JSON errors on these routes, whatever app holds them
    _blueprint.before_request(_limit_body)
    cors.install(_blueprint)


# -- starting -------------------------------------------------------------------
@starter.post("/orchestrators/<function_name>")
@starter.post("/orchestrators/<function_name>/<path:instance_id>")
@management.post("/orchestrators/<function_name>")
@management.post("/orchestrators/<function_name>/<path:instance_id>")
def start(function_name: str, instance_id: str | None = None) -> Response:
    """Start `function_name` as a singleton: 202 check-status.

    With ``timeout``, wait for the run this request started: a Completed run answers
    200 with its output, a Failed or Terminated one with its status (200; 500 for Failed
    with ``returnInternalServerErrorOnFailure``), a run still live with the 202.
    """
    timeout = inputs.number("timeout", 0.0, MAX_WAIT_SECONDS)
    interval = inputs.number("pollingInterval", MIN_POLLING_INTERVAL, MAX_WAIT_SECONDS)
    fail_as_500 = inputs.flag("returnInternalServerErrorOnFailure", False)
    policies = {
        "if_live": inputs.choice("ifLive", [p.value for p in IfLive]),
        "if_finished": inputs.choice("ifFinished", [p.value for p in IfFinished]),
        "request_id": request.headers.get(IDEMPOTENCY_HEADER) or None,
    }
    body = inputs.json_body()
    started = _client().start_run(function_name, instance_id, body, **policies)
    done = _wait(started, timeout, interval or DEFAULT_POLLING_INTERVAL) if timeout else None
    if done is None:
        return urls.check_status_response(started.instance_id)
    if done.runtime_status is RuntimeStatus.COMPLETED:
        return json_response(done.output)
    return _finished(done, fail_as_500=fail_as_500)


def _wait(started: StartedRun, timeout: float, interval: float) -> OrchestrationStatus | None:
    # The run this request started, not whatever run holds the ID by the end of the wait.
    try:
        return _client().wait_for_completion(started.instance_id, timeout, interval=interval,
                                             run_id=started.run_id)
    except (WaitTimeout, InstanceNotFound, RunReplaced):
        return None


def _finished(status: OrchestrationStatus, *, fail_as_500: bool, show_output: bool = False) -> Response:
    failed = status.runtime_status is RuntimeStatus.FAILED
    body = status.to_json(show_history_output=show_output)
    return json_response(body, 500 if failed and fail_as_500 else 200)


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
    if status.runtime_status.is_live:
        response = json_response(status.to_json(show_history_output=show_output), 202)
        response.headers["Location"] = urls.status_location(instance_id)
        response.headers["Retry-After"] = str(LIVE_RETRY_AFTER)
        return response
    return _finished(status, fail_as_500=fail_as_500, show_output=show_output)


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
    response = json_response([s.to_json() for s in page.instances])
    response.headers[CONTINUATION_HEADER] = page.continuation_token or ""
    return response


# -- managing -------------------------------------------------------------------
@management.post("/instances/<instance_id>/terminate")
def terminate(instance_id: str) -> Response:
    """Terminate the live run: 202; 404 unknown; 410 already finished."""
    _client().terminate(instance_id, request.args.get("reason"))
    return empty_response(202)


@management.delete("/instances/<instance_id>")
def purge(instance_id: str) -> Response:
    """Delete a finished instance's record: 200; 404 unknown; 412 still live."""
    if _client().purge_instance_history(instance_id) == 0:
        raise InstanceNotFound(instance_id)
    return json_response({"instancesDeleted": 1})


@management.delete("/instances")
@management.delete("/instances/")
def purge_many() -> Response:
    """Delete the finished records created in a time range: 200 with the count; 404 if none."""
    created_from = inputs.moment("createdTimeFrom")
    if created_from is None:
        raise ApiError(ErrorCategory.BAD_INPUT, "missing_query_parameter",
                       "The query parameter 'createdTimeFrom' is required.")
    deleted = _client().purge_instance_history_by(
        created_time_from=created_from,
        created_time_to=inputs.moment("createdTimeTo"),
        runtime_status=inputs.runtime_statuses(),
    )
    if deleted == 0:
        raise ApiError(ErrorCategory.NOT_FOUND, "no_instances_deleted",
                       "No instances matched the filter; none was deleted.")
    return json_response({"instancesDeleted": deleted})


@management.post("/instances/<instance_id>/raiseEvent/<event_name>")
def raise_event(instance_id: str, event_name: str) -> Response:
    """Send an event (JSON body) to the instance: 202; 400 not JSON; 404 unknown; 410 finished."""
    _client().raise_event(instance_id, event_name, inputs.json_body())
    return empty_response(202)


@management.post("/instances/<instance_id>/suspend")
def suspend(instance_id: str) -> Response:
    """Suspend the live run: 202 (also when already suspended); 404 unknown; 410 finished."""
    # Already suspended: the outcome asked for holds; Durable Functions answers 202 too.
    with contextlib.suppress(InvalidTransition):
        _client().suspend(instance_id, request.args.get("reason"))
    return empty_response(202)


@management.post("/instances/<instance_id>/resume")
def resume(instance_id: str) -> Response:
    """Resume a suspended run: 202 (also when not suspended); 404 unknown; 410 finished."""
    # Live and not suspended: nothing to resume; Durable Functions answers 202 too.
    with contextlib.suppress(InvalidTransition):
        _client().resume(instance_id, request.args.get("reason"))
    return empty_response(202)


@management.post("/instances/<instance_id>/restart")
def restart(instance_id: str) -> Response:
    """Start the orchestrator again with the original input: 202 check-status of the new run."""
    new_id = inputs.flag("restartWithNewInstanceId", True)
    return urls.check_status_response(_client().restart(instance_id, new_instance_id=new_id))


# -- the API's own description -------------------------------------------------
@starter.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document of every route."""
    return json_response(DOCUMENT)
