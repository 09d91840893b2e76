"""OrchestrationClient input errors, with no worker running: a bad start claims nothing.

Other test modules run real workers on the same Redis, so these tests avoid publishing
anything: every start here fails before its claim.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
import redis

from singleton import (
    InstanceNotFound,
    InvalidContinuationToken,
    InvalidInput,
    InvalidInstanceId,
    OrchestrationClient,
    OrchestratorNotFound,
    PayloadTooLarge,
    RuntimeStatus,
)
from singleton.errors import RunReplaced
from singleton.runtime import runtime
from singleton.store import SHARDS


def assert_nothing_claimed(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, instance_id: str, marker: str
) -> None:
    """No record, no key naming the ID (or the test's marker), no index entry."""
    with contextlib.suppress(InvalidInstanceId):  # a refused ID cannot have a record either
        assert client.get_status(instance_id) is None
    named = [k for k in redis_client.scan_iter(count=1000) if marker.encode() in k]
    assert named == []
    prefix = runtime(app).settings.key_prefix
    for shard in range(SHARDS):
        assert redis_client.zscore(f"{prefix}:{{{shard:x}}}:created", instance_id) is None


DELAY_OK = {"seconds": 0, "value": "v"}


# -- start_new refusals ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["NoSuchOrchestrator", "", "delay", "Delay ", None])
def test_start_with_unknown_orchestrator_name_raises_orchestrator_not_found(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str, name: Any
) -> None:
    with pytest.raises(OrchestratorNotFound) as caught:
        client.start_new(name, uid, DELAY_OK)

    assert caught.value.name == str(name)
    assert str(caught.value) == f"The orchestrator '{name}' does not exist."
    assert caught.value.code == "orchestrator_not_found"
    assert_nothing_claimed(app, client, redis_client, uid, uid)


def test_start_with_an_input_over_the_payload_limit_raises_payload_too_large(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str
) -> None:
    limit = runtime(app).settings.max_payload
    with pytest.raises(PayloadTooLarge) as caught:
        client.start_new("Delay", uid, {"seconds": 0, "value": "x" * limit})

    assert (caught.value.what, caught.value.limit) == ("start input", limit)
    assert caught.value.size > limit and caught.value.code == "payload_too_large"
    assert_nothing_claimed(app, client, redis_client, uid, uid)


@pytest.mark.parametrize(
    "suffix", ["/slash", "\\backslash", "?query", "#hash", "\x00nul", "\nnewline", "\x7fdel"]
)
def test_start_with_invalid_instance_id_raises_invalid_instance_id(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str, suffix: str
) -> None:
    bad_id = uid + suffix

    with pytest.raises(InvalidInstanceId) as caught:
        client.start_new("Delay", bad_id, DELAY_OK)

    assert caught.value.instance_id == bad_id
    assert_nothing_claimed(app, client, redis_client, bad_id, uid)


@pytest.mark.parametrize("bad_id", ["", "@entity", "z" * 257, 42])
def test_start_with_malformed_instance_id_raises_invalid_instance_id(
    client: OrchestrationClient, redis_client: redis.Redis, bad_id: Any
) -> None:
    keys_before = set(redis_client.keys("*"))

    with pytest.raises(InvalidInstanceId) as caught:
        client.start_new("Delay", bad_id, DELAY_OK)

    assert caught.value.instance_id == bad_id
    assert set(redis_client.keys("*")) <= keys_before


@pytest.mark.parametrize(
    "bad_input",
    [{1, 2}, object(), float("nan"), float("inf"), {"seconds": 0, "value": {"nested": {3}}}, b"bytes"],
    ids=["set", "object", "nan", "inf", "nested-set", "bytes"],
)
def test_start_with_non_json_input_raises_invalid_input(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str, bad_input: Any
) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.start_new("Delay", uid, bad_input)

    assert "not JSON-serialisable" in caught.value.reason
    assert str(caught.value).startswith("Invalid input: the input is not JSON-serialisable")
    assert_nothing_claimed(app, client, redis_client, uid, uid)


@pytest.mark.parametrize(
    ("bad_input", "reason"),
    [
        ({"seconds": -1}, "seconds must be between 0 and 3600"),
        ({"seconds": 4000}, "seconds must be between 0 and 3600"),
        ({"seconds": 3600.5}, "seconds must be between 0 and 3600"),
        ({"seconds": "x"}, "seconds must be a number"),
        ({"seconds": None}, "seconds must be a number"),
        ({"seconds": True}, "seconds must be a number"),
        ({"value": 1}, 'Delay expects {"seconds": <0-3600>, "value": <any>}'),
        (None, 'Delay expects {"seconds": <0-3600>, "value": <any>}'),
        ([5], 'Delay expects {"seconds": <0-3600>, "value": <any>}'),
    ],
    ids=["negative", "too-long", "just-over", "string", "null", "bool", "missing", "none", "list"],
)
def test_start_delay_with_input_it_rejects_raises_invalid_input(
    app: Any,
    client: OrchestrationClient,
    redis_client: redis.Redis,
    uid: str,
    bad_input: Any,
    reason: str,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.start_new("Delay", uid, bad_input)

    assert caught.value.reason == reason
    assert caught.value.code == "invalid_input"
    assert isinstance(caught.value.__cause__, ValueError)
    assert_nothing_claimed(app, client, redis_client, uid, uid)


def test_orchestrator_name_is_checked_before_instance_id_and_input(
    client: OrchestrationClient,
) -> None:
    with pytest.raises(OrchestratorNotFound):
        client.start_new("NoSuchOrchestrator", "bad/id", {1})


def test_instance_id_is_checked_before_input(client: OrchestrationClient) -> None:
    with pytest.raises(InvalidInstanceId):
        client.start_new("Delay", "bad/id", {1})


def test_refused_start_leaves_an_existing_record_untouched(
    app: Any, client: OrchestrationClient, uid: str
) -> None:
    store = runtime(app).store
    claim = store.claim(uid, name="Delay", run_id="run-held", input_json='{"seconds":0}')
    assert claim.claimed
    try:
        before = store.read(uid)
        with pytest.raises(InvalidInput):
            client.start_new("Delay", uid, {"seconds": -1})
        assert store.read(uid) == before
    finally:
        store.terminate(uid, reason_json="null")
        store.purge(uid)


@pytest.mark.parametrize("call", ["start_new", "get_status"])
def test_instance_id_that_is_not_encodable_raises_invalid_instance_id(
    client: OrchestrationClient, uid: str, call: str
) -> None:
    bad_id = uid + "\ud800"
    with pytest.raises(InvalidInstanceId):
        if call == "start_new":
            client.start_new("Delay", bad_id, DELAY_OK)
        else:
            client.get_status(bad_id)


# -- reading and managing unknown instances --------------------------------------------


def test_get_status_of_an_unknown_id_is_none(client: OrchestrationClient, uid: str) -> None:
    assert client.get_status(uid) is None
    assert client.get_status(uid, show_input=False) is None


def test_get_status_with_an_invalid_id_raises_invalid_instance_id(client: OrchestrationClient) -> None:
    with pytest.raises(InvalidInstanceId):
        client.get_status("a/b")


def test_terminate_of_an_unknown_id_raises_instance_not_found(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str
) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        client.terminate(uid, "no reason")

    assert caught.value.instance_id == uid
    assert str(caught.value) == f"No instance with ID '{uid}' was found."
    assert_nothing_claimed(app, client, redis_client, uid, uid)


def test_purge_of_an_unknown_id_returns_zero(
    app: Any, client: OrchestrationClient, redis_client: redis.Redis, uid: str
) -> None:
    assert client.purge_instance_history(uid) == 0
    assert_nothing_claimed(app, client, redis_client, uid, uid)


def test_wait_for_completion_of_an_unknown_id_raises_instance_not_found(
    client: OrchestrationClient, uid: str
) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        client.wait_for_completion(uid, timeout=5)

    assert caught.value.instance_id == uid


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "é",
        _b64(b"not json"),
        _b64(b"\xff\xfe"),
        _b64(json.dumps(5).encode()),
        _b64(json.dumps({"a": 1, "b": 2}).encode()),
        _b64(json.dumps(["x", 1]).encode()),
        _b64(json.dumps([1.5, "x"]).encode()),
        _b64(json.dumps([1, 2, 3]).encode()),
        _b64(json.dumps([1]).encode()),
        _b64(json.dumps([True, "x"]).encode()),
        _b64(json.dumps([2**80, "x"]).encode()),
        _b64(b"[" * 50_000 + b"]" * 50_000),
    ],
)
def test_get_status_by_with_a_garbage_continuation_token_raises_invalid_continuation_token(
    client: OrchestrationClient, token: str
) -> None:
    with pytest.raises(InvalidContinuationToken) as caught:
        client.get_status_by(continuation_token=token, page_size=5)

    assert caught.value.token == token
    assert caught.value.code == "invalid_continuation_token"


def test_wait_for_completion_of_one_run_refuses_to_answer_for_another_run_of_the_id(
    app: Any, client: OrchestrationClient, uid: str
) -> None:
    store = runtime(app).store
    # A record, nothing published.
    assert store.claim(uid, name="Probe", run_id="run-one", input_json="null").claimed
    try:
        with pytest.raises(RunReplaced) as caught:
            client.wait_for_completion(uid, timeout=5, run_id="an-earlier-run")
        assert (caught.value.run_id, caught.value.status.run_id) == ("an-earlier-run", "run-one")
        store.end_run(uid, run_id="run-one", status=RuntimeStatus.COMPLETED, output_json=json.dumps("done"))
        done = client.wait_for_completion(uid, timeout=5, run_id="run-one")
        assert (done.runtime_status, done.output) == (RuntimeStatus.COMPLETED, "done")
    finally:
        store.terminate(uid, reason_json="null")
        store.purge(uid)
