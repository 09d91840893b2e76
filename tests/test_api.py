"""The HTTP API through Flask's test client: routes, codes, headers, JSON shapes, errors.

Every response a test sees is checked against the OpenAPI document (``assert_documented``).
Tests that need runs to finish use the real worker; the others use instances that stay
live until the test ends (Held: one step that waits to be released) and terminate them, so
they pass with or without a worker.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from celery import Celery
from flask import Flask
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api import ConfigError, create_app, init_app
from api.openapi import DOCUMENT
from singleton.runtime import runtime
from tests.probe import release, release_all
from tests.workers import REPO, wait_until

WEBHOOK = "/runtime/webhooks/durabletask"
CHECK_STATUS_KEYS = [
    "id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri",
    "restartPostUri", "suspendPostUri", "resumePostUri",
]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The input of a Held run (tests.probe): its release key, this test's own (hold_live_runs).
LIVE: dict[str, str] = {}


# -- the OpenAPI check ---------------------------------------------------------
_BASE = "urn:openapi"
# Absolute $refs, so that a schema cut out of the document still resolves them.
_ABSOLUTE = json.loads(json.dumps(DOCUMENT).replace('"#/components/', f'"{_BASE}#/components/'))
_REGISTRY = Registry().with_resource(
    _BASE, Resource.from_contents(_ABSOLUTE, default_specification=DRAFT202012)
)


def _template_regex(template: str) -> re.Pattern[str]:
    # A start route takes the rest of the path as the ID, so that 'a/b' gets a 400.
    rest = "(.+)" if "/orchestrators/" in template else "([^/]+)"
    pattern = re.sub(r"\\\{instanceId\\\}", rest, re.escape(template))
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "([^/]+)", pattern) + "$")


_TEMPLATES = [(_template_regex(t), item) for t, item in _ABSOLUTE["paths"].items()]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _REGISTRY.resolver().lookup(node["$ref"]).contents
    return node


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for regex, item in _TEMPLATES:
        if regex.match(path):
            return item.get(method.lower() if method != "HEAD" else "get")
    return None


def assert_documented(method: str, path: str, status: int, headers: Any, body: bytes) -> None:
    """Fail unless the response's status, headers and body are what the document says."""
    operation = _operation(method, path)
    if operation is None:  # unknown route or wrong method: the generic error answers
        assert status in (401, 404, 405), f"{method} {path} answered {status}, undocumented"
        response = _resolve(_ABSOLUTE["components"]["responses"][f"E{status}"])
    else:
        assert str(status) in operation["responses"], f"{method} {path}: {status} is not documented"
        response = _resolve(operation["responses"][str(status)])
    for name in response.get("headers", {}):
        assert name in headers, f"{method} {path} {status}: header {name} missing"
    content = response.get("content")
    if content is None or method == "HEAD":
        assert body == b"", f"{method} {path} {status}: expected an empty body"
        return
    assert headers.get("Content-Type", "").startswith("application/json")
    validator = Draft202012Validator(content["application/json"]["schema"], registry=_REGISTRY)
    validator.validate(json.loads(body))


class Checked:
    """A Flask test client whose every response must match the OpenAPI document."""

    def __init__(self, flask_app: Any) -> None:
        self.app = flask_app
        self._client = flask_app.test_client()

    def open(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._client.open(url, method=method, **kwargs)
        assert_documented(method, response.request.path, response.status_code, response.headers,
                          response.get_data())
        return response

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.open("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.open("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.open("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Any:
        return self.open("OPTIONS", url, **kwargs)


# -- fixtures ------------------------------------------------------------------
@pytest.fixture(scope="module")
def flask_app(app: Celery) -> Any:
    return create_app({"API_AUTH": "anonymous"}, celery_app=app)


@pytest.fixture
def http(flask_app: Any) -> Checked:
    return Checked(flask_app)


@pytest.fixture
def keyed(app: Celery) -> Checked:
    return Checked(create_app({"API_KEYS": "key-one, k/2+ü"}, celery_app=app))


@pytest.fixture(autouse=True)
def hold_live_runs(redis_client: Any, uid: str):
    """Key this test's Held runs by its uid; release every one of them when it ends."""
    LIVE.clear()
    LIVE["key"] = uid
    yield
    release_all(redis_client, uid)


@pytest.fixture
def live(http: Checked, uid: str):
    """Start a Held run under `uid`, live until released; terminate it afterwards."""
    response = http.post(f"/api/orchestrators/Held/{uid}", json=LIVE)
    assert response.status_code == 202
    yield uid
    http._client.post(f"{WEBHOOK}/instances/{uid}/terminate")


def status_of(http: Checked, instance_id: str, query: str = "") -> Any:
    return http.get(f"{WEBHOOK}/instances/{quote(instance_id, safe='')}{query}")


def finished(http: Checked, instance_id: str) -> Any:
    return wait_until(
        lambda: (r := status_of(http, instance_id)).status_code != 202 and r, 30, f"{instance_id} to finish"
    )


# -- starting ------------------------------------------------------------------
def test_start_answers_202_with_the_check_status_response_in_contract_order(http, uid):
    response = http.post(f"/api/orchestrators/HelloSequence/{uid}")
    assert response.status_code == 202
    body = response.get_json()
    assert list(body) == CHECK_STATUS_KEYS
    base = f"http://localhost{WEBHOOK}/instances/{uid}"
    assert body == {
        "id": uid,
        "statusQueryGetUri": base,
        "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}",
        "terminatePostUri": f"{base}/terminate?reason={{text}}",
        "purgeHistoryDeleteUri": base,
        "restartPostUri": f"{base}/restart",
        "suspendPostUri": f"{base}/suspend?reason={{text}}",
        "resumePostUri": f"{base}/resume?reason={{text}}",
    }
    assert response.headers["Location"] == base
    assert response.headers["Retry-After"] == "10"
    assert response.headers["Content-Type"] == "application/json"


def test_start_without_an_id_uses_a_random_32_hex_id(http):
    response = http.post("/api/orchestrators/HelloSequence")
    assert response.status_code == 202
    assert re.fullmatch(r"[0-9a-f]{32}", response.get_json()["id"])


def test_check_status_urls_url_encode_the_instance_id(http, uid):
    instance_id = f"{uid} ü:+&="
    response = http.post(f"/api/orchestrators/HelloSequence/{quote(instance_id, safe='')}")
    assert response.get_json()["id"] == instance_id
    encoded = quote(instance_id, safe="")
    assert response.headers["Location"] == f"http://localhost{WEBHOOK}/instances/{encoded}"
    assert status_of(http, instance_id).get_json()["instanceId"] == instance_id


def test_check_status_urls_use_the_request_host(http, uid):
    response = http.post(f"/api/orchestrators/HelloSequence/{uid}", base_url="https://example.test:8443")
    assert response.get_json()["statusQueryGetUri"] == f"https://example.test:8443{WEBHOOK}/instances/{uid}"


def test_second_start_of_a_live_id_answers_409_naming_the_live_instance(http, live):
    response = http.post(f"/api/orchestrators/Held/{live}", json=LIVE)
    assert response.status_code == 409
    body = response.get_json()
    assert body["Message"] == f"An instance with ID '{live}' already exists."
    assert body["code"] == "instance_already_exists"
    assert body["runtimeStatus"] in ("Pending", "Running")
    assert body["statusQueryGetUri"] == f"http://localhost{WEBHOOK}/instances/{live}"


def test_management_start_route_starts_and_refuses_like_the_starter(http, uid):
    first = http.post(f"{WEBHOOK}/orchestrators/Held/{uid}", json=LIVE)
    second = http.post(f"{WEBHOOK}/orchestrators/Held/{uid}", json=LIVE)
    http.post(f"{WEBHOOK}/instances/{uid}/terminate")
    assert (first.status_code, second.status_code) == (202, 409)
    assert http.post(f"{WEBHOOK}/orchestrators/HelloSequence").status_code == 202


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b'{"a": [1, 2]}', "application/json", {"a": [1, 2]}),
        (b"[1, 2]", "application/json", [1, 2]),
        (b'"just a string"', "application/json", "just a string"),
        (b"42.5", "text/plain", 42.5),
        (b"null", "application/json", None),
        (b"", "application/octet-stream", None),
        (b"", None, None),
    ],
)
def test_start_body_may_be_any_json_value_and_becomes_the_input(http, uid, data, content_type, expected):
    response = http.post(f"/api/orchestrators/HelloSequence/{uid}", data=data, content_type=content_type)
    assert response.status_code == 202
    assert status_of(http, uid).get_json()["input"] == expected


@pytest.mark.parametrize("data", [b"{", b"NaN", b"[1,]", b"\xff\xfe\x00", b"{'a': 1}", b"[" * 100_000])
def test_start_with_a_body_that_is_not_json_answers_400(http, uid, data):
    url = f"/api/orchestrators/HelloSequence/{uid}"
    response = http.post(url, data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_json"
    assert status_of(http, uid).status_code == 404  # nothing was claimed


def test_start_with_a_body_over_the_limit_answers_413(app, uid):
    small = Checked(create_app({"API_AUTH": "anonymous", "MAX_CONTENT_LENGTH": "64"}, celery_app=app))
    response = small.post(f"/api/orchestrators/HelloSequence/{uid}", json={"pad": "x" * 100})
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert small.post(f"/api/orchestrators/HelloSequence/{uid}", json={"pad": "x"}).status_code == 202


def test_start_of_an_unknown_orchestrator_answers_404(http, uid):
    response = http.post(f"/api/orchestrators/NoSuchThing/{uid}")
    assert response.status_code == 404
    assert response.get_json()["code"] == "orchestrator_not_found"


@pytest.mark.parametrize("raw_id", ["@x", "a%2Fb", "a%3Fb", "a%23b", "a%5Cb", "a%00b", "x" * 257])
def test_start_with_an_invalid_instance_id_answers_400(http, raw_id):
    response = http.post(f"/api/orchestrators/HelloSequence/{raw_id}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_instance_id"
    assert "Invalid instance ID" in body["Message"]


def test_input_the_orchestrator_rejects_answers_400(http, uid):
    response = http.post(f"/api/orchestrators/Delay/{uid}", json={"seconds": -1})
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_input"


@pytest.mark.usefixtures("worker")
def test_start_with_timeout_answers_200_with_the_output_when_the_run_completes_in_time(http, uid):
    url = f"/api/orchestrators/Delay/{uid}?timeout=15&pollingInterval=0.1"
    response = http.post(url, json={"seconds": 0, "value": {"answer": 42}})
    assert response.status_code == 200
    assert response.get_json() == {"answer": 42}


def test_start_with_timeout_answers_202_while_the_run_is_still_live(http, uid):
    response = http.post(f"/api/orchestrators/Held/{uid}?timeout=0.3&pollingInterval=0.1", json=LIVE)
    http.post(f"{WEBHOOK}/instances/{uid}/terminate")
    assert response.status_code == 202
    assert response.get_json()["id"] == uid


def _start_in_background(flask_app: Any, url: str, body: Any) -> tuple[threading.Thread, list[Any]]:
    """POST `url` from another thread (a start that waits); the response lands in the list."""
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(Checked(flask_app).post(url, json=body)),
                              daemon=True)
    thread.start()
    return thread, answers


def _joined(thread: threading.Thread, answers: list[Any]) -> Any:
    thread.join(timeout=30)
    assert not thread.is_alive() and len(answers) == 1, "the waiting start did not answer"
    return answers[0]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(("query", "code"), [("", 200), ("&returnInternalServerErrorOnFailure=true", 500)])
def test_start_with_timeout_answers_with_the_status_when_the_run_failed_in_time(http, uid, query, code):
    response = http.post(f"/api/orchestrators/AlwaysFails/{uid}?timeout=15&pollingInterval=0.1{query}",
                         json="x")
    assert response.status_code == code
    body = response.get_json()
    assert (body["instanceId"], body["runtimeStatus"], body["output"]) == (uid, "Failed", "ValueError: boom")


def test_start_with_timeout_answers_200_with_the_status_when_the_run_is_terminated_in_time(
    flask_app, http, client, redis_client, uid
):
    url = f"/api/orchestrators/Held/{uid}?timeout=15&pollingInterval=0.05"
    thread, answers = _start_in_background(flask_app, url, {"key": uid})
    wait_until(lambda: client.get_status(uid) is not None, 10, "the start to claim the ID")
    http.post(f"{WEBHOOK}/instances/{uid}/terminate?reason=stop")
    response = _joined(thread, answers)
    release(redis_client, uid)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["instanceId"], body["runtimeStatus"], body["output"]) == (uid, "Terminated", "stop")


@pytest.mark.usefixtures("worker")
def test_start_with_timeout_never_answers_with_the_output_of_a_later_run_of_the_id(
    flask_app, http, client, redis_client, uid
):
    url = f"/api/orchestrators/Held/{uid}?timeout=15&pollingInterval=0.05"
    thread, answers = _start_in_background(flask_app, url, {"key": uid})
    first = wait_until(lambda: client.get_status(uid), 10, "the first start to claim the ID")
    # A second start replaces the first run in one step and completes within the wait.
    replaced = http.post(f"/api/orchestrators/Delay/{uid}?ifLive=terminate_existing",
                         json={"seconds": 0, "value": "second run"})
    assert replaced.status_code == 202
    # The first run's step may already be executing: the second run's step waits for it
    # to end (the drain), so let it end now.
    release(redis_client, uid)
    second = wait_until(lambda: (s := client.get_status(uid)).runtime_status.is_terminal and s, 20,
                        "the second run to complete")
    response = _joined(thread, answers)
    assert (second.output, second.run_id != first.run_id) == ("second run", True)
    assert response.status_code == 202 and response.get_json()["id"] == uid


@pytest.mark.parametrize("query", ["timeout=soon", "timeout=-1", "pollingInterval=nan&timeout=1"])
def test_start_with_a_bad_timeout_answers_400_and_claims_nothing(http, uid, query):
    response = http.post(f"/api/orchestrators/HelloSequence/{uid}?{query}")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_query_parameter"
    assert status_of(http, uid).status_code == 404


# -- status --------------------------------------------------------------------
def test_status_of_a_live_instance_answers_202_with_location_and_retry_after(http, live):
    response = status_of(http, live, "?showInput=true")
    assert response.status_code == 202
    assert response.headers["Location"] == f"http://localhost{WEBHOOK}/instances/{live}?showInput=true"
    assert response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert list(body) == ["name", "instanceId", "runtimeStatus", "input", "customStatus", "output",
                          "createdTime", "lastUpdatedTime"]
    assert body["name"] == "Held" and body["instanceId"] == live and body["input"] == LIVE
    assert ISO_UTC.match(body["createdTime"]) and ISO_UTC.match(body["lastUpdatedTime"])


@pytest.mark.parametrize("instance_id", ["pct%20id", "100%", "with space", "ü:+&="])
def test_the_status_location_names_the_instance_quoted_once(http, uid, instance_id):
    instance_id = f"{uid}-{instance_id}"
    encoded = quote(instance_id, safe="")
    http.post(f"/api/orchestrators/Held/{encoded}", json=LIVE)
    response = status_of(http, instance_id, "?showInput=false")
    http.post(f"{WEBHOOK}/instances/{encoded}/terminate")
    assert response.status_code == 202
    location = response.headers["Location"]
    assert location == f"http://localhost{WEBHOOK}/instances/{encoded}?showInput=false"
    followed = http.get(urlsplit(location).path)
    assert followed.get_json()["instanceId"] == instance_id


@pytest.mark.usefixtures("worker")
def test_status_of_a_completed_instance_answers_200_with_the_output(http, uid):
    http.post(f"/api/orchestrators/HelloSequence/{uid}")
    response = finished(http, uid)
    assert response.status_code == 200
    body = response.get_json()
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert "Location" not in response.headers


def test_status_of_an_unknown_instance_answers_404_json(http, uid):
    response = status_of(http, uid)
    assert response.status_code == 404
    assert response.get_json()["code"] == "instance_not_found"


@pytest.mark.parametrize("value", ["false", "False", "FALSE"])
def test_show_input_false_hides_the_input_in_any_case(http, live, value):
    assert status_of(http, live, f"?showInput={value}").get_json()["input"] is None


def test_history_events_appear_only_when_asked_for(http, live):
    assert "historyEvents" not in status_of(http, live).get_json()
    history = status_of(http, live, "?showHistory=TRUE").get_json()["historyEvents"]
    assert [e["EventType"] for e in history] == ["ExecutionStarted"]
    assert history[0]["FunctionName"] == "Held"


@pytest.mark.usefixtures("worker")
def test_history_of_a_completed_run_lists_every_step_and_outputs_on_request(http, uid):
    http.post(f"/api/orchestrators/HelloSequence/{uid}")
    finished(http, uid)
    events = status_of(http, uid, "?showHistory=true").get_json()["historyEvents"]
    assert [e["EventType"] for e in events] == [
        "ExecutionStarted", "TaskCompleted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"
    ]
    assert {e["FunctionName"] for e in events[1:4]} == {"proj.tasks.say_hello"}
    assert all("Result" not in e for e in events)
    with_output = status_of(http, uid, "?showHistory=true&showHistoryOutput=true").get_json()
    assert with_output["historyEvents"][1]["Result"] == ["Hello Tokyo!"]
    assert with_output["historyEvents"][-1]["Result"] == with_output["output"]


@pytest.mark.parametrize(
    "query", ["?showInput=yes", "?showHistory=", "?returnInternalServerErrorOnFailure=1"]
)
def test_a_flag_that_is_not_true_or_false_answers_400(http, live, query):
    response = status_of(http, live, query)
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_query_parameter"


def test_status_with_an_invalid_instance_id_answers_400(http):
    assert status_of(http, "@bad").status_code == 400


@pytest.mark.usefixtures("worker")
def test_a_failed_instance_answers_500_only_when_asked_to(http, uid):
    http.post(f"/api/orchestrators/AlwaysFails/{uid}", json="x")
    plain = finished(http, uid)
    assert (plain.status_code, plain.get_json()["runtimeStatus"]) == (200, "Failed")
    assert plain.get_json()["output"] == "ValueError: boom"
    strict = status_of(http, uid, "?returnInternalServerErrorOnFailure=True")
    assert strict.status_code == 500
    assert strict.get_json()["runtimeStatus"] == "Failed"


# -- listing -------------------------------------------------------------------
@pytest.fixture
def three(http: Checked, uid: str) -> list[str]:
    """Three instances under one prefix, the middle one terminated."""
    ids = [f"{uid}-{n}" for n in range(3)]
    for instance_id in ids:
        assert http.post(f"/api/orchestrators/Held/{instance_id}", json=LIVE).status_code == 202
    http.post(f"{WEBHOOK}/instances/{ids[1]}/terminate")
    yield ids
    for instance_id in ids:
        http._client.post(f"{WEBHOOK}/instances/{instance_id}/terminate")


def listing(http: Checked, query: str, token: str | None = None, path: str = "/instances") -> Any:
    headers = {"x-ms-continuation-token": token} if token else {}
    return http.get(f"{WEBHOOK}{path}?{query}", headers=headers)


def test_list_filters_by_prefix_newest_first_with_the_token_header_empty_at_the_end(http, three, uid):
    response = listing(http, f"instanceIdPrefix={uid}-")
    assert response.status_code == 200
    assert [s["instanceId"] for s in response.get_json()] == three[::-1]
    assert response.headers["x-ms-continuation-token"] == ""


def test_list_pages_with_top_and_the_continuation_token(http, three, uid):
    seen, token = [], None
    for _ in range(10):
        response = listing(http, f"instanceIdPrefix={uid}-&top=1", token)
        seen += [s["instanceId"] for s in response.get_json()]
        token = response.headers["x-ms-continuation-token"]
        if not token:
            break
    assert seen == three[::-1]


@pytest.mark.parametrize("status_query", ["runtimeStatus=Terminated", "runtimeStatus=terminated,Failed",
                                          "runtimeStatus=Failed&runtimeStatus=TERMINATED"])
def test_list_filters_by_runtime_status_as_a_comma_list_or_repeated(http, three, uid, status_query):
    response = listing(http, f"instanceIdPrefix={uid}-&{status_query}")
    assert [s["instanceId"] for s in response.get_json()] == [three[1]]


def test_list_of_a_status_this_layer_never_produces_is_empty(http, three, uid):
    response = listing(http, f"instanceIdPrefix={uid}-&runtimeStatus=Canceled")
    assert (response.status_code, response.get_json()) == (200, [])


def test_list_filters_by_created_time_and_hides_input_when_asked(http, three, uid):
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert listing(http, f"instanceIdPrefix={uid}-&createdTimeFrom={quote(later)}").get_json() == []
    earlier = quote((datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    response = listing(http, f"instanceIdPrefix={uid}-&createdTimeFrom={earlier}&showInput=false")
    assert len(response.get_json()) == 3
    assert all(s["input"] is None for s in response.get_json())


def test_list_answers_on_the_trailing_slash_route_too(http, three, uid):
    response = listing(http, f"instanceIdPrefix={uid}-", path="/instances/")
    assert len(response.get_json()) == 3


@pytest.mark.parametrize(
    "query",
    ["createdTimeFrom=yesterday", "createdTimeTo=2026-13-01", "top=0", "top=ten", "runtimeStatus=Done",
     "runtimeStatus=", "runtimeStatus=Running,"],
)
def test_list_with_a_bad_query_parameter_answers_400(http, query):
    response = listing(http, query)
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_query_parameter"


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize("token", [_token([True, "x"]), _token([False, "x"]), _token([2**80, "x"]),
                                   base64.urlsafe_b64encode(b"[" * 50_000 + b"]" * 50_000).decode()])
def test_list_with_a_malformed_continuation_token_answers_400(http, token):
    response = listing(http, "", token=token)
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_continuation_token")


@pytest.mark.parametrize("bound", ["createdTimeFrom=0001-01-01T00:00:00%2B05:00",
                                   "createdTimeTo=9999-12-31T23:59:59-05:00"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_time_an_offset_carries_out_of_range_answers_400_on_list_and_purge(http, method, bound):
    query = bound if bound.startswith("createdTimeFrom") else f"createdTimeFrom=2026-01-01T00:00:00Z&{bound}"
    response = http.open(method, f"{WEBHOOK}/instances?{query}")
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_query_parameter")


def test_list_with_a_continuation_token_we_did_not_issue_answers_400(http):
    response = listing(http, "", token="not-a-token")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_continuation_token"


# -- terminating and purging -----------------------------------------------------
def test_terminate_answers_202_with_an_empty_body_and_records_the_reason(http, live):
    response = http.post(f"{WEBHOOK}/instances/{live}/terminate?reason=not%20needed")
    assert (response.status_code, response.get_data()) == (202, b"")
    body = status_of(http, live).get_json()
    assert (body["runtimeStatus"], body["output"]) == ("Terminated", "not needed")


def test_terminate_of_an_unknown_instance_answers_404_and_of_a_finished_one_410(http, live, uid):
    assert http.post(f"{WEBHOOK}/instances/{uid}-none/terminate").status_code == 404
    http.post(f"{WEBHOOK}/instances/{live}/terminate")
    again = http.post(f"{WEBHOOK}/instances/{live}/terminate")
    assert again.status_code == 410
    assert again.get_json()["code"] == "instance_is_terminal"
    assert again.get_json()["runtimeStatus"] == "Terminated"


def test_purge_deletes_a_finished_instance_then_answers_404(http, live):
    assert http.delete(f"{WEBHOOK}/instances/{live}").status_code == 412  # still live
    http.post(f"{WEBHOOK}/instances/{live}/terminate")
    response = http.delete(f"{WEBHOOK}/instances/{live}")
    assert (response.status_code, response.get_json()) == (200, {"instancesDeleted": 1})
    assert status_of(http, live).status_code == 404
    assert http.delete(f"{WEBHOOK}/instances/{live}").status_code == 404


def test_purge_by_created_time_deletes_the_finished_instances_in_the_range(http, uid):
    since = datetime.now(UTC)
    ids = [f"{uid}-{n}" for n in range(2)]
    for instance_id in ids:
        http.post(f"/api/orchestrators/Held/{instance_id}", json=LIVE)
        http.post(f"{WEBHOOK}/instances/{instance_id}/terminate")
    until = datetime.now(UTC)
    window = f"createdTimeFrom={quote(since.isoformat())}&createdTimeTo={quote(until.isoformat())}"
    response = http.delete(f"{WEBHOOK}/instances?{window}")
    assert (response.status_code, response.get_json()) == (200, {"instancesDeleted": 2})
    again = http.delete(f"{WEBHOOK}/instances/?{window}")
    assert (again.status_code, again.get_json()["code"]) == (404, "no_instances_deleted")


def test_purge_by_filter_without_created_time_from_answers_400(http):
    response = http.delete(f"{WEBHOOK}/instances?runtimeStatus=Completed")
    assert (response.status_code, response.get_json()["code"]) == (400, "missing_query_parameter")


# -- events, suspend, resume, restart --------------------------------------------
def instance_path(instance_id: str, operation: str) -> str:
    return f"{WEBHOOK}/instances/{quote(instance_id, safe='')}/{operation}"


@pytest.mark.usefixtures("worker")
def test_raise_event_answers_202_and_the_waiting_run_continues_with_the_body(http, uid):
    assert http.post(f"/api/orchestrators/ApprovalWorkflow/{uid}").status_code == 202
    response = http.post(instance_path(uid, "raiseEvent/Approval"), json={"by": "ada"})
    assert (response.status_code, response.data) == (202, b"")
    assert finished(http, uid).get_json()["output"] == {"approved": {"by": "ada"}}


def test_raise_event_to_an_unknown_instance_answers_404(http, uid):
    response = http.post(instance_path(uid, "raiseEvent/Approval"), json=True)
    assert (response.status_code, response.get_json()["code"]) == (404, "instance_not_found")


def test_raise_event_to_a_finished_instance_answers_410(http, live):
    http.post(instance_path(live, "terminate"))
    response = http.post(instance_path(live, "raiseEvent/Approval"), json=True)
    assert (response.status_code, response.get_json()["runtimeStatus"]) == (410, "Terminated")


def test_raise_event_with_a_body_that_is_not_json_answers_400(http, live):
    response = http.post(instance_path(live, "raiseEvent/Approval"), data=b"{nope",
                         content_type="application/json")
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_json")


def test_raise_event_beyond_the_instances_buffer_limit_answers_429(http, live, app, client):
    limit = runtime(app).settings.max_events
    for n in range(limit):  # nothing waits for these: each is buffered
        client.raise_event(live, "Unawaited", n)
    response = http.post(instance_path(live, "raiseEvent/Unawaited"), json=limit)
    body = response.get_json()
    assert (response.status_code, body["code"]) == (429, "too_many_events")
    assert str(limit) in body["Message"]


def test_suspend_and_resume_answer_202_and_repeat_calls_202_as_in_durable_functions(http, live):
    assert http.post(instance_path(live, "suspend?reason=maintenance")).status_code == 202
    assert status_of(http, live).get_json()["runtimeStatus"] == "Suspended"
    again = http.post(instance_path(live, "suspend"))
    assert (again.status_code, again.get_data()) == (202, b"")
    assert status_of(http, live).get_json()["runtimeStatus"] == "Suspended"
    assert http.post(instance_path(live, "resume?reason=done")).status_code == 202
    assert status_of(http, live).get_json()["runtimeStatus"] != "Suspended"
    resumed_twice = http.post(instance_path(live, "resume"))
    assert (resumed_twice.status_code, resumed_twice.get_data()) == (202, b"")
    assert status_of(http, live).get_json()["runtimeStatus"] in ("Pending", "Running")


@pytest.mark.parametrize("operation", ["suspend", "resume"])
def test_suspend_and_resume_of_unknown_or_finished_instances_answer_404_and_410(
    http, live, uid, operation
):
    assert http.post(instance_path(f"{uid}-unknown", operation)).status_code == 404
    http.post(instance_path(live, "terminate"))
    assert http.post(instance_path(live, operation)).status_code == 410


@pytest.mark.usefixtures("worker")
def test_restart_answers_202_with_the_check_status_of_a_new_instance(http, uid):
    http.post(f"/api/orchestrators/Delay/{uid}", json={"seconds": 0, "value": "again"})
    finished(http, uid)
    response = http.post(instance_path(uid, "restart"))
    assert response.status_code == 202
    new_id = response.get_json()["id"]
    assert new_id != uid
    assert finished(http, new_id).get_json()["output"] == "again"


def test_restart_under_the_same_id_of_a_live_instance_answers_409(http, live):
    response = http.post(instance_path(live, "restart?restartWithNewInstanceId=false"))
    assert (response.status_code, response.get_json()["code"]) == (409, "instance_already_exists")


def test_restart_of_an_unknown_instance_answers_404(http, uid):
    assert http.post(instance_path(uid, "restart")).status_code == 404


# -- start policies and idempotency keys ------------------------------------------
def test_if_live_use_existing_answers_202_with_the_live_instance(http, live):
    response = http.post(f"/api/orchestrators/Held/{live}?ifLive=use_existing", json=LIVE)
    assert (response.status_code, response.get_json()["id"]) == (202, live)


def test_if_live_terminate_existing_replaces_the_live_run(http, live):
    response = http.post(f"/api/orchestrators/Held/{live}?ifLive=terminate_existing", json=LIVE)
    assert response.status_code == 202
    assert status_of(http, live).get_json()["runtimeStatus"] in ("Pending", "Running")


@pytest.mark.parametrize("query", ["ifLive=sometimes", "ifFinished=", "ifLive=FAIL"])
def test_an_unknown_start_policy_answers_400_and_claims_nothing(http, uid, query):
    response = http.post(f"/api/orchestrators/Held/{uid}?{query}", json=LIVE)
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_query_parameter")
    assert status_of(http, uid).status_code == 404


def test_a_retried_start_with_the_same_idempotency_key_answers_202_with_the_same_instance(http, uid):
    headers = {"Idempotency-Key": f"key-{uid}"}
    first = http.post(f"/api/orchestrators/Held/{uid}", json=LIVE, headers=headers)
    again = http.post(f"/api/orchestrators/Held/{uid}", json=LIVE, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    other = http.post(f"/api/orchestrators/Held/{uid}", json=LIVE, headers={"Idempotency-Key": "x"})
    assert other.status_code == 409
    http.post(instance_path(uid, "terminate"))


def test_an_idempotency_key_without_an_instance_id_finds_the_same_instance(http, uid):
    headers = {"Idempotency-Key": f"key-{uid}"}
    first = http.post("/api/orchestrators/Held", json=LIVE, headers=headers).get_json()["id"]
    again = http.post("/api/orchestrators/Held", json=LIVE, headers=headers).get_json()["id"]
    assert first == again
    http.post(instance_path(first, "terminate"))


# -- OPTIONS and CORS ----------------------------------------------------------
@pytest.mark.parametrize(("path", "allowed"), [
    ("/api/orchestrators/HelloSequence/x", "OPTIONS, POST"),
    (f"{WEBHOOK}/instances/x", "DELETE, GET, HEAD, OPTIONS"),
    (f"{WEBHOOK}/instances", "DELETE, GET, HEAD, OPTIONS"),
    (f"{WEBHOOK}/instances/x/raiseEvent/Approval", "OPTIONS, POST"),
    ("/metrics", "GET, HEAD, OPTIONS"),
])
def test_options_answers_204_with_the_allowed_methods_and_needs_no_key(keyed, path, allowed):
    response = keyed.options(path, headers={"Origin": "https://app.example",
                                            "Access-Control-Request-Method": "POST"})
    assert (response.status_code, response.get_data()) == (204, b"")
    assert response.headers["Allow"] == allowed
    assert "Content-Type" not in response.headers
    assert [h for h, _ in response.headers if h.lower().startswith("access-control-")] == []


@pytest.fixture
def cors(app: Celery) -> Checked:
    return Checked(create_app({"API_KEYS": "key-one", "CORS_ORIGINS": "https://app.example"},
                              celery_app=app))


def test_a_preflight_from_an_allowed_origin_gets_the_cors_headers(cors, uid):
    response = cors.options(f"/api/orchestrators/HelloSequence/{uid}",
                            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "x-functions-key, content-type"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    assert "x-functions-key" in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_responses_to_an_allowed_origin_expose_the_polling_headers_and_others_get_none(cors, uid):
    allowed = cors.get(f"{WEBHOOK}/instances/{uid}", headers={"Origin": "https://app.example",
                                                              "x-functions-key": "key-one"})
    assert allowed.status_code == 404
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Location" in allowed.headers["Access-Control-Expose-Headers"]
    other = cors.options(f"{WEBHOOK}/instances/{uid}", headers={"Origin": "https://evil.example"})
    assert other.status_code == 204 and "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("origins", ["app.example", "https://app.example/path", "https://a.example,ftp://b"])
def test_a_cors_origin_that_is_not_an_origin_is_refused_at_start_up(app, origins):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        create_app({"API_AUTH": "anonymous", "CORS_ORIGINS": origins}, celery_app=app)


# -- generic errors ------------------------------------------------------------
@pytest.mark.parametrize("path", ["/nope", "/api/orchestrators", "/api//orchestrators/Delay/x", "/static/x"])
def test_an_unknown_route_answers_404_json(http, path):
    response = http.get(path)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_a_wrong_method_answers_405_json_with_allow(http, uid):
    response = http.get(f"/api/orchestrators/HelloSequence/{uid}")
    assert response.status_code == 405
    assert response.get_json()["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


class _Exploding:
    def get_status(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_answers_a_generic_500_and_logs_the_traceback(http, flask_app, uid, caplog):
    good, flask_app.extensions["singleton"] = flask_app.extensions["singleton"], _Exploding()
    try:
        response = status_of(http, uid)
    finally:
        flask_app.extensions["singleton"] = good
    assert response.status_code == 500
    assert response.get_json()["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text


# -- keys and configuration ----------------------------------------------------
def test_the_app_refuses_to_start_without_keys_unless_anonymous_is_explicit(app):
    with pytest.raises(ConfigError, match="API_AUTH=anonymous"):
        create_app({}, celery_app=app)
    with pytest.raises(ConfigError, match="contradict"):
        create_app({"API_KEYS": "k", "API_AUTH": "anonymous"}, celery_app=app)


def test_the_app_refuses_to_start_without_the_celery_app_it_manages():
    with pytest.raises(ConfigError, match="celery_app"):
        create_app({"API_AUTH": "anonymous"})


def test_the_api_imports_at_module_level_only_and_never_the_project():
    for path in sorted((REPO / "api").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert inner == [], f"api/{path.name}: an import inside {node.name}()"
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            assert [m for m in modules if m.split(".")[0] == "proj"] == [], f"api/{path.name} imports proj"


def test_anonymous_access_logs_a_warning_at_start_up(app, caplog):
    with caplog.at_level(logging.WARNING, logger="api"):
        create_app({"API_AUTH": "Anonymous"}, celery_app=app)
    assert any(r.levelno == logging.WARNING and "anonymous" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "config", [{"API_AUTH": "anonymous", "MAX_CONTENT_LENGTH": "big"}, {"API_KEYS": " , "},
               {"API_AUTH": "anonymous", "TRUST_PROXY_HEADERS": "several"}]
)
def test_invalid_configuration_is_refused_at_start_up(app, config):
    with pytest.raises(ConfigError):
        create_app(config, celery_app=app)


def test_configuration_comes_from_the_environment_when_no_mapping_is_given(app, monkeypatch):
    monkeypatch.setenv("API_KEYS", "from-env")
    monkeypatch.delenv("API_AUTH", raising=False)
    env_app = Checked(create_app(celery_app=app))
    assert env_app.get("/api/openapi.json").status_code == 401
    assert env_app.get("/api/openapi.json?code=from-env").status_code == 200


@pytest.mark.parametrize("headers, query", [({}, ""), ({}, "?code=wrong"), ({"x-functions-key": "key-"}, "")])
def test_a_missing_or_wrong_key_answers_401_json_on_every_route(keyed, uid, headers, query):
    for method, path in [("POST", f"/api/orchestrators/HelloSequence/{uid}"),
                         ("GET", f"{WEBHOOK}/instances/{uid}"), ("GET", "/api/openapi.json"),
                         ("GET", "/no/such/route")]:
        response = keyed.open(method, f"{path}{query}", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["code"] == "unauthorized"


def test_a_key_is_accepted_in_the_query_or_the_header_and_any_configured_key_works(keyed, uid):
    assert keyed.get(f"{WEBHOOK}/instances/{uid}?code=key-one").status_code == 404
    assert keyed.get(f"{WEBHOOK}/instances/{uid}", headers={"x-functions-key": "k/2+ü"}).status_code == 404
    assert keyed.get(f"{WEBHOOK}/instances/{uid}?code={quote('k/2+ü')}").status_code == 404


def test_check_status_urls_carry_the_callers_key_when_it_came_as_code(keyed, uid):
    code = quote("k/2+ü", safe="")
    response = keyed.post(f"/api/orchestrators/Held/{uid}?code={code}", json=LIVE)
    body = response.get_json()
    assert body["statusQueryGetUri"].endswith(f"/instances/{uid}?code={code}")
    assert body["terminatePostUri"].endswith(f"/terminate?reason={{text}}&code={code}")
    assert response.headers["Location"] == body["statusQueryGetUri"]
    conflict = keyed.post(f"/api/orchestrators/Held/{uid}?code=key-one", json=LIVE)
    keyed.post(f"{WEBHOOK}/instances/{uid}/terminate?code=key-one")
    assert conflict.status_code == 409
    assert conflict.get_json()["statusQueryGetUri"].endswith(f"/instances/{uid}?code=key-one")


def test_a_key_sent_as_the_header_is_never_copied_into_urls(keyed, uid):
    header = {"x-functions-key": "k/2+ü"}
    response = keyed.post(f"/api/orchestrators/Held/{uid}", json=LIVE, headers=header)
    status = keyed.get(f"{WEBHOOK}/instances/{uid}?showInput=false", headers=header)
    conflict = keyed.post(f"/api/orchestrators/Held/{uid}", json=LIVE, headers=header)
    keyed.post(f"{WEBHOOK}/instances/{uid}/terminate", headers=header)
    urls = [*response.get_json().values(), response.headers["Location"], status.headers["Location"],
            conflict.get_json()["statusQueryGetUri"]]
    assert response.status_code == 202 and status.status_code == 202 and conflict.status_code == 409
    assert [u for u in urls if "code=" in u] == []
    assert status.headers["Location"].endswith(f"/instances/{uid}?showInput=false")


def test_the_header_key_takes_precedence_over_a_stale_code(keyed, uid):
    stale = keyed.get(f"{WEBHOOK}/instances/{uid}?code=expired", headers={"x-functions-key": "key-one"})
    assert (stale.status_code, stale.get_json()["code"]) == (404, "instance_not_found")
    wrong_header = keyed.get(f"{WEBHOOK}/instances/{uid}?code=key-one", headers={"x-functions-key": "old"})
    assert wrong_header.status_code == 401


def test_keys_never_reach_the_log(app, keyed, uid, caplog):
    with caplog.at_level(logging.DEBUG):
        keyed.get(f"{WEBHOOK}/instances/{uid}?code=key-one")
        keyed.get(f"{WEBHOOK}/instances/{uid}?code=guess-1")
        create_app({"API_KEYS": "key-one"}, celery_app=app)
    assert "key-one" not in caplog.text and "guess-1" not in caplog.text


def test_forwarded_headers_are_honoured_only_when_configured(app, uid):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}
    trusting = Checked(create_app({"API_AUTH": "anonymous", "TRUST_PROXY_HEADERS": "1"},
                                  celery_app=app))
    plain = Checked(create_app({"API_AUTH": "anonymous"}, celery_app=app))
    behind = trusting.post(f"/api/orchestrators/HelloSequence/{uid}-a", headers=forwarded)
    direct = plain.post(f"/api/orchestrators/HelloSequence/{uid}-b", headers=forwarded)
    assert behind.headers["Location"].startswith("https://public.example/")
    assert direct.headers["Location"].startswith("http://localhost/")


# -- inside an existing Flask application ----------------------------------------
@pytest.fixture
def users_app(app: Celery) -> Flask:
    """A user's own Flask app, with its own route, that the API is added to."""
    own = Flask("users_app")

    @own.get("/hello")
    def hello() -> str:
        return "hello from the user's own route"

    init_app(own, app, {"API_KEYS": "user-key"})
    return own


@pytest.mark.usefixtures("worker")
def test_init_app_serves_the_api_beside_the_apps_own_routes(users_app, uid):
    plain = users_app.test_client()
    own = plain.get("/hello")
    assert (own.status_code, own.get_data(as_text=True)) == (200, "hello from the user's own route")
    assert plain.get("/no/such/page").mimetype == "text/html"  # the app's own error pages

    api = Checked(users_app)
    key = {"x-functions-key": "user-key"}
    started = api.post(f"/api/orchestrators/HelloSequence/{uid}", headers=key)
    assert (started.status_code, list(started.get_json())) == (202, CHECK_STATUS_KEYS)
    done = wait_until(lambda: (r := api.get(f"{WEBHOOK}/instances/{uid}", headers=key)).status_code == 200
                      and r, 30, "the run to complete")
    assert done.get_json()["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    waited = api.post(f"/api/orchestrators/Delay/{uid}-2?timeout=15", json={"seconds": 0, "value": 7},
                      headers=key)
    assert (waited.status_code, waited.get_json()) == (200, 7)


def test_init_app_guards_only_the_apis_routes_with_its_keys(users_app, uid):
    plain = users_app.test_client()
    assert plain.get("/hello").status_code == 200
    refused = Checked(users_app).get(f"{WEBHOOK}/instances/{uid}")
    assert (refused.status_code, refused.get_json()["code"]) == (401, "unauthorized")


# -- the OpenAPI document --------------------------------------------------------
def _rule_template(rule: str) -> str:
    camel = {"function_name": "functionName", "instance_id": "instanceId", "event_name": "eventName"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + camel[m[1]] + "}", rule)


def test_the_openapi_document_describes_exactly_the_routes_of_the_app(http, flask_app):
    response = http.get("/api/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"].startswith("3.1")
    routes: dict[str, set[str]] = {}
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint.startswith("dashboard."):
            continue  # the dashboard's HTML pages are not part of the JSON API
        routes.setdefault(_rule_template(rule.rule), set()).update(m.lower() for m in rule.methods - {"HEAD"})
    documented = {path: set(item) for path, item in DOCUMENT["paths"].items()}
    assert routes == documented


def test_every_schema_in_the_openapi_document_is_valid_json_schema():
    for schema in _ABSOLUTE["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
