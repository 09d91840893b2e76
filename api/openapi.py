"""The OpenAPI 3.1 document of every route, served at GET /api/openapi.json.

The tests validate every response they see against it, so it stays true.
"""

from __future__ import annotations

from typing import Any

WEBHOOK = "/runtime/webhooks/durabletask"
RUNTIME_STATUSES = [
    "Pending", "Running", "Suspended", "ContinuedAsNew", "Completed", "Failed", "Terminated", "Canceled",
]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = {name: _ref("headers", ref) for name, ref in headers.items()}
    return response


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ref("responses", f"E{code}") for code in codes}


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


_BOOLEAN = {"type": "string", "pattern": "^(?i:true|false)$"}
# The rules of singleton.validate_instance_id: no leading '@'; no '/', '\\', '?', '#'
# or control characters (C0, DEL, C1).
_INSTANCE_ID_PATTERN = r"^[^@/\\?#\x00-\x1f\x7f-\x9f][^/\\?#\x00-\x1f\x7f-\x9f]*$"
_SECONDS = {"type": "number", "minimum": 0}
_ISO_TIME = {"type": "string", "format": "date-time"}

_PARAMETERS = {
    "functionName": {"name": "functionName", "in": "path", "required": True,
                     "schema": {"type": "string"}, "description": "A registered orchestrator's name."},
    "instanceId": {"name": "instanceId", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 256,
                              "pattern": _INSTANCE_ID_PATTERN},
                   "description": "1-256 characters; not starting with '@'; no '/', '\\', '?', '#' "
                                  "or control characters (URL-encoded in the path)."},
    "timeout": _query("timeout", _SECONDS, "Wait up to this many seconds (at most 20) for the run."),
    "pollingInterval": _query("pollingInterval", _SECONDS, "Seconds between polls (default 1)."),
    "showInput": _query("showInput", _BOOLEAN, "Include the input (default true)."),
    "showHistory": _query("showHistory", _BOOLEAN,
                          "Add historyEvents (default false): the start, one entry per step of the "
                          "current run (name, start and end times, outcome), and the end."),
    "showHistoryOutput": _query("showHistoryOutput", _BOOLEAN,
                                "With showHistory, add each step's Result (default false)."),
    "ifLive": _query("ifLive", {"enum": ["fail", "use_existing", "terminate_existing"]},
                     "While a live run holds the ID: refuse with 409 (fail, the default unless the "
                     "orchestrator sets another), answer with the live run (use_existing), or "
                     "terminate it and start anew (terminate_existing)."),
    "ifFinished": _query("ifFinished", {"enum": ["allow", "allow_failed_only", "reject"]},
                         "When only a finished run is on record: start anew (allow, the default), only "
                         "after Failed or Terminated (allow_failed_only), or never while the record "
                         "exists (reject); refused starts answer 409."),
    "idempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                       "description": "A retried start with the same key answers with the run that "
                                      "key started (202), not 409."},
    "restartWithNewInstanceId": _query("restartWithNewInstanceId", _BOOLEAN,
                                       "Restart under a new random ID (default true); false reuses "
                                       "the ID, which needs a finished instance."),
    "returnInternalServerErrorOnFailure": _query(
        "returnInternalServerErrorOnFailure", _BOOLEAN, "Answer 500 instead of 200 for a Failed instance."),
    "runtimeStatus": _query("runtimeStatus", {"type": "array", "items": {"enum": RUNTIME_STATUSES}},
                            "Statuses to match (case-insensitive): a comma list, or the parameter repeated.",
                            style="form", explode=True),
    "createdTimeFrom": _query("createdTimeFrom", _ISO_TIME, "Created at or after (ISO-8601)."),
    "createdTimeTo": _query("createdTimeTo", _ISO_TIME, "Created at or before (ISO-8601)."),
    "createdTimeFromRequired": {**_query("createdTimeFrom", _ISO_TIME, "Created at or after (ISO-8601)."),
                                "required": True},
    "instanceIdPrefix": _query("instanceIdPrefix", {"type": "string"}, "Instance IDs starting with this."),
    "top": _query("top", {"type": "integer", "minimum": 1},
                  "Page size (default 100, at most 1000); a page may hold fewer and still go on."),
    "reason": _query("reason", {"type": "string"}, "Why; stored as the output of a terminated run."),
    "continuationToken": {"name": "x-ms-continuation-token", "in": "header", "required": False,
                          "schema": {"type": "string"}, "description": "The token of the page to read."},
}

_SCHEMAS: dict[str, Any] = {
    "CheckStatus": {
        "type": "object",
        "required": ["id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri",
                     "purgeHistoryDeleteUri", "restartPostUri", "suspendPostUri", "resumePostUri"],
        "properties": {
            "id": {"type": "string"},
            **{name: {"type": "string", "format": "uri"} for name in (
                "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri",
                "restartPostUri", "suspendPostUri", "resumePostUri")},
        },
        "additionalProperties": False,
    },
    "Status": {
        "type": "object",
        "required": ["name", "instanceId", "runtimeStatus", "input", "customStatus", "output",
                     "createdTime", "lastUpdatedTime"],
        "properties": {
            "name": {"type": "string"},
            "instanceId": {"type": "string"},
            "runtimeStatus": {"enum": RUNTIME_STATUSES},
            "input": {}, "customStatus": {}, "output": {},
            "createdTime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
            "lastUpdatedTime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
            "historyEvents": {"type": "array", "items": _ref("schemas", "HistoryEvent")},
        },
        "additionalProperties": False,
    },
    "HistoryEvent": {
        "type": "object",
        "required": ["EventType", "Timestamp"],
        "properties": {
            "EventType": {"enum": ["ExecutionStarted", "TaskCompleted", "TaskFailed", "TaskTimedOut",
                                   "ExecutionCompleted"]},
            "FunctionName": {"type": "string"},
            "TaskId": {"type": "string"},
            "ScheduledTime": {"type": "string", "format": "date-time"},
            "Timestamp": {"type": "string", "format": "date-time"},
            "OrchestrationStatus": {"enum": RUNTIME_STATUSES},
            "Result": {},
        },
        "additionalProperties": False,
    },
    "StatusList": {"type": "array", "items": _ref("schemas", "Status")},
    "Purged": {"type": "object", "required": ["instancesDeleted"],
               "properties": {"instancesDeleted": {"type": "integer", "minimum": 1}},
               "additionalProperties": False},
    "Error": {
        "type": "object",
        "required": ["Message", "ExceptionMessage", "code"],
        "properties": {
            "Message": {"type": "string"},
            "ExceptionMessage": {"type": "string"},
            "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
            "instanceId": {"type": "string"},
            "runtimeStatus": {"enum": RUNTIME_STATUSES},
            "statusQueryGetUri": {"type": "string", "format": "uri"},
        },
        "additionalProperties": False,
    },
    "Conflict": {"allOf": [_ref("schemas", "Error"),
                           {"required": ["instanceId", "runtimeStatus", "statusQueryGetUri"]}]},
}

_ERROR_TEXT = {
    400: "Invalid instance ID, body that is not JSON, invalid input, or a bad query parameter or token.",
    401: "A valid function key is required (when API_KEYS is configured).",
    404: "Unknown orchestrator, instance or route.",
    405: "The route does not allow this method.",
    409: "The instance's status does not allow it.",
    410: "The instance has already finished.",
    412: "The instance is still live: only a finished instance can be purged.",
    413: "The body is longer than MAX_CONTENT_LENGTH, or its input or event data than singleton_max_payload.",
    429: "The instance already buffers singleton_max_events events that no wait took; nothing was added.",
    500: "An unexpected error; details are in the server's log.",
    503: "Redis or the broker is unreachable; nothing was left claimed. Retry after Retry-After seconds.",
}

_HEADERS = {
    "Location": {"schema": {"type": "string", "format": "uri"}, "description": "Where to poll the status."},
    "StartRetryAfter": {"schema": {"type": "integer", "const": 10}, "description": "Seconds before polling."},
    "StatusRetryAfter": {"schema": {"type": "integer", "const": 5}, "description": "Seconds before polling."},
    "UnavailableRetryAfter": {"schema": {"type": "integer"}, "description": "Seconds before retrying."},
    "ContinuationToken": {"schema": {"type": "string"},
                          "description": "The next page's token; empty at the end."},
    "Allow": {"schema": {"type": "string"}, "description": "The methods the route allows."},
}

_RESPONSES = {
    f"E{code}": _json(_ref("schemas", "Error"), text, **({"Retry-After": "UnavailableRetryAfter"}
                                                         if code == 503 else {}))
    for code, text in _ERROR_TEXT.items()
}
_RESPONSES["E409Start"] = _json(_ref("schemas", "Conflict"),
                                "The run on record keeps the ID (a live run, or a finished one under "
                                "ifFinished); follow statusQueryGetUri.")
_RESPONSES["CheckStatus"] = _json(_ref("schemas", "CheckStatus"), "Started; poll statusQueryGetUri.",
                                  Location="Location", **{"Retry-After": "StartRetryAfter"})


def _start(with_id: bool) -> dict[str, Any]:
    names = ["functionName", *(["instanceId"] if with_id else []), "timeout", "pollingInterval",
             "returnInternalServerErrorOnFailure", "ifLive", "ifFinished", "idempotencyKey"]
    return {"post": {
        "summary": "Start the orchestrator as a singleton" + ("" if with_id else " under a random ID"),
        "parameters": [_ref("parameters", n) for n in names],
        "requestBody": {"required": False, "description": "The input: any JSON value; empty means null.",
                        "content": {"application/json": {"schema": {}}}},
        "responses": {
            "200": _json({}, "Finished within `timeout`, the run this request started: the output "
                             "if Completed, the Status if Failed or Terminated."),
            "202": _ref("responses", "CheckStatus"),
            "409": _ref("responses", "E409Start"),
            "500": _json({"anyOf": [_ref("schemas", "Status"), _ref("schemas", "Error")]},
                         "Failed within `timeout`, with returnInternalServerErrorOnFailure=true: the "
                         "Status; or an unexpected error."),
            **_errors(400, 401, 404, 413, 503),
        },
    }}


def _instance_operations() -> dict[str, Any]:
    path_id = [_ref("parameters", "instanceId")]
    status_params = ["showInput", "showHistory", "showHistoryOutput", "returnInternalServerErrorOnFailure"]
    status = _ref("schemas", "Status")
    return {
        "get": {
            "summary": "The instance's status",
            "parameters": path_id + [_ref("parameters", n) for n in status_params],
            "responses": {
                "200": _json(status, "Finished (Completed, Failed or Terminated)."),
                "202": _json(status, "Still live (Pending, Running, Suspended or ContinuedAsNew).",
                             Location="Location", **{"Retry-After": "StatusRetryAfter"}),
                "500": _json({"anyOf": [status, _ref("schemas", "Error")]},
                             "Failed, with returnInternalServerErrorOnFailure=true; or an unexpected error."),
                **_errors(400, 401, 404, 503),
            },
        },
        "delete": {
            "summary": "Purge a finished instance's record",
            "parameters": path_id,
            "responses": {"200": _json(_ref("schemas", "Purged"), "Deleted."),
                          **_errors(400, 401, 404, 412, 500, 503)},
        },
    }


def _collection_operations() -> dict[str, Any]:
    list_params = ["runtimeStatus", "createdTimeFrom", "createdTimeTo", "instanceIdPrefix", "showInput",
                   "top", "continuationToken"]
    return {
        "get": {
            "summary": "List instances, newest first, one page at a time",
            "parameters": [_ref("parameters", n) for n in list_params],
            "responses": {
                "200": _json(_ref("schemas", "StatusList"), "One page.",
                             **{"x-ms-continuation-token": "ContinuationToken"}),
                **_errors(400, 401, 500, 503),
            },
        },
        "delete": {
            "summary": "Purge the finished instances created in a time range",
            "parameters": [_ref("parameters", n)
                           for n in ("createdTimeFromRequired", "createdTimeTo", "runtimeStatus")],
            "responses": {"200": _json(_ref("schemas", "Purged"), "Deleted."),
                          **_errors(400, 401, 404, 500, 503)},
        },
    }


def _terminate() -> dict[str, Any]:
    return {"post": {
        "summary": "Terminate the live run",
        "parameters": [_ref("parameters", "instanceId"), _ref("parameters", "reason")],
        "responses": {"202": {"description": "Terminated; empty body."},
                      **_errors(400, 401, 404, 410, 500, 503)},
    }}


def _operation(summary: str, codes: tuple[int, ...], *params: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "parameters": [_ref("parameters", "instanceId"), *params],
        "responses": {"202": {"description": "Accepted; empty body."}, **_errors(*codes)},
    }}


def _raise_event() -> dict[str, Any]:
    operation = _operation("Send an event to the instance (buffered until a wait takes it)",
                           (400, 401, 404, 410, 413, 429, 500, 503), _EVENT_NAME)
    operation["post"]["requestBody"] = {
        "required": False, "description": "The event's data: any JSON value; empty means null.",
        "content": {"application/json": {"schema": {}}},
    }
    return operation


def _restart() -> dict[str, Any]:
    return {"post": {
        "summary": "Start the orchestrator again with the original input",
        "parameters": [_ref("parameters", "instanceId"), _ref("parameters", "restartWithNewInstanceId")],
        "responses": {"202": _ref("responses", "CheckStatus"), "409": _ref("responses", "E409Start"),
                      **_errors(400, 401, 404, 500, 503)},
    }}


_EVENT_NAME = {"name": "eventName", "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 256,
                          "pattern": r"^[^\x00-\x1f\x7f-\x9f]+$"},
               "description": "1-256 characters, no control characters."}
_REASON = _ref("parameters", "reason")

_PATHS = {
    "/api/orchestrators/{functionName}": _start(False),
    "/api/orchestrators/{functionName}/{instanceId}": _start(True),
    f"{WEBHOOK}/orchestrators/{{functionName}}": _start(False),
    f"{WEBHOOK}/orchestrators/{{functionName}}/{{instanceId}}": _start(True),
    f"{WEBHOOK}/instances": _collection_operations(),
    f"{WEBHOOK}/instances/": _collection_operations(),
    f"{WEBHOOK}/instances/{{instanceId}}": _instance_operations(),
    f"{WEBHOOK}/instances/{{instanceId}}/terminate": _terminate(),
    f"{WEBHOOK}/instances/{{instanceId}}/raiseEvent/{{eventName}}": _raise_event(),
    f"{WEBHOOK}/instances/{{instanceId}}/suspend": _operation(
        "Suspend the live run: no further step starts (202 too when already suspended)",
        (400, 401, 404, 410, 500, 503), _REASON),
    f"{WEBHOOK}/instances/{{instanceId}}/resume": _operation(
        "Resume a suspended run where it stopped (202 too when live and not suspended)",
        (400, 401, 404, 410, 500, 503), _REASON),
    f"{WEBHOOK}/instances/{{instanceId}}/restart": _restart(),
    "/metrics": {"get": {
        "summary": "Prometheus metrics (text format); without a key when METRICS_PUBLIC=1",
        "responses": {"200": {"description": "The scrape.", "content": {"text/plain": {"schema": {
            "type": "string"}}}}, **_errors(401, 500)},
    }},
    "/api/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "The OpenAPI document."), **_errors(401, 500)},
    }},
}

# Any segment the route matches: OPTIONS answers for the route, whatever the ID.
_ANY_SEGMENT = {"type": "string", "minLength": 1}


def _options(template: str) -> dict[str, Any]:
    names = [n for n in ("functionName", "instanceId", "eventName") if f"{{{n}}}" in template]
    return {
        "summary": "The methods the route allows (a CORS preflight); needs no key",
        "security": [],
        "parameters": [{"name": n, "in": "path", "required": True, "schema": _ANY_SEGMENT} for n in names],
        "responses": {
            "204": {"description": "Empty body; Allow lists the methods. With CORS_ORIGINS set and an "
                                   "allowed Origin, the Access-Control-Allow-* headers too.",
                    "headers": {"Allow": _ref("headers", "Allow")}},
            **_errors(404),
        },
    }


for _template, _item in _PATHS.items():
    _item["options"] = _options(_template)

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Singleton orchestrations for Celery",
        "version": "0.1.0",
        "description": (
            "Durable Functions' singleton starter and management HTTP API on Celery. Every error "
            "body is JSON with Message, ExceptionMessage and code. Any route answers 401 without a "
            "valid key (when keys are configured; the x-functions-key header takes precedence over "
            "code=), except OPTIONS, which needs none; an unknown route answers 404 and a wrong "
            "method 405, both with the Error body."
        ),
    },
    "security": [{"functionKeyQuery": []}, {"functionKeyHeader": []}, {}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "parameters": _PARAMETERS,
        "responses": _RESPONSES,
        "headers": _HEADERS,
        "securitySchemes": {
            "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
        },
    },
}
