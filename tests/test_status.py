"""Instance ID rules (validate_instance_id, new_instance_id) and RuntimeStatus predicates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from singleton import (
    InvalidInstanceId,
    OrchestrationStatus,
    RuntimeStatus,
    StepHistory,
    new_instance_id,
    validate_instance_id,
)
from singleton.errors import SingletonError

LENGTH_RULE = "it must be 1 to 256 characters long"
CHARACTER_RULE = "it must not contain '/', '\\', '?', '#' or control characters"


@pytest.mark.parametrize(
    "instance_id",
    [
        "a",
        "x" * 256,
        "Ünïcødé-实例-🚀",
        "with spaces inside",
        " leading and trailing ",
        "colons:are:fine",
        "{braces}",
        "}{",
        "mid@dle",
        "a" * 255 + "é",
    ],
)
def test_valid_instance_id_is_returned_unchanged(instance_id: str) -> None:
    assert validate_instance_id(instance_id) is instance_id


def _rejection(instance_id: object) -> InvalidInstanceId:
    with pytest.raises(InvalidInstanceId) as caught:
        validate_instance_id(instance_id)
    return caught.value


def test_empty_instance_id_is_rejected_for_its_length() -> None:
    error = _rejection("")
    assert error.instance_id == ""
    assert error.reason == LENGTH_RULE
    assert str(error) == f"Invalid instance ID '': {LENGTH_RULE}."


def test_instance_id_of_257_characters_is_rejected_for_its_length() -> None:
    too_long = "y" * 257
    error = _rejection(too_long)
    assert error.instance_id == too_long
    assert str(error) == f"Invalid instance ID {too_long!r}: {LENGTH_RULE}."


def test_length_counts_characters_not_bytes() -> None:
    assert validate_instance_id("é" * 256) == "é" * 256
    assert _rejection("é" * 257).reason == LENGTH_RULE


def test_instance_id_starting_with_at_sign_is_rejected() -> None:
    error = _rejection("@entity")
    assert error.instance_id == "@entity"
    assert str(error) == "Invalid instance ID '@entity': it must not start with '@'."


@pytest.mark.parametrize(
    "instance_id",
    ["a/b", "a\\b", "what?", "#tag", "nul\x00byte", "line\nbreak", "tab\there", "\x1f", "del\x7f"],
)
def test_instance_id_with_forbidden_character_is_rejected(instance_id: str) -> None:
    error = _rejection(instance_id)
    assert error.instance_id == instance_id
    assert error.reason == CHARACTER_RULE
    assert str(error) == f"Invalid instance ID {instance_id!r}: {CHARACTER_RULE}."


@pytest.mark.parametrize("control", ["\x80", "\x85", "\x9f"])
def test_instance_id_with_c1_control_character_is_rejected(control: str) -> None:
    error = _rejection(f"c1{control}control")
    assert error.reason == CHARACTER_RULE


@pytest.mark.parametrize("instance_id", [None, 42, b"bytes", ["a"]])
def test_non_string_instance_id_is_rejected(instance_id: object) -> None:
    error = _rejection(instance_id)
    assert error.instance_id == instance_id
    assert error.reason == "it must be a string"
    assert str(error) == f"Invalid instance ID {instance_id!r}: it must be a string."


def test_invalid_instance_id_error_is_a_singleton_error_with_its_code() -> None:
    error = _rejection("")
    assert isinstance(error, SingletonError)
    assert error.code == "invalid_instance_id"


def test_new_instance_id_is_32_lowercase_hex_characters_and_valid() -> None:
    instance_id = new_instance_id()
    assert re.fullmatch(r"[0-9a-f]{32}", instance_id)
    assert validate_instance_id(instance_id) == instance_id


def test_new_instance_id_differs_on_every_call() -> None:
    ids = {new_instance_id() for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    ("status", "live"),
    [
        (RuntimeStatus.PENDING, True),
        (RuntimeStatus.RUNNING, True),
        (RuntimeStatus.SUSPENDED, True),
        (RuntimeStatus.CONTINUED_AS_NEW, True),
        (RuntimeStatus.COMPLETED, False),
        (RuntimeStatus.FAILED, False),
        (RuntimeStatus.TERMINATED, False),
    ],
)
def test_runtime_status_is_live_exactly_when_not_terminal(status: RuntimeStatus, live: bool) -> None:
    assert status.is_live is live
    assert status.is_terminal is (not live)


def test_runtime_status_values_are_the_durable_functions_names() -> None:
    assert [s.value for s in RuntimeStatus] == [
        "Pending", "Running", "Suspended", "ContinuedAsNew", "Completed", "Failed", "Terminated"
    ]
    assert RuntimeStatus("Running") is RuntimeStatus.RUNNING


# -- the status JSON -------------------------------------------------------------
CREATED = datetime(2026, 11, 26, 5, 18, 49, 123456, tzinfo=UTC)
# The same moment as UTC+02:00: the JSON always says it in UTC.
UPDATED = datetime(2026, 11, 26, 7, 18, 54, 987654, tzinfo=timezone(timedelta(hours=2)))


def _status(history: list[StepHistory] | None = None) -> OrchestrationStatus:
    return OrchestrationStatus(
        name="HelloSequence", instance_id="job-1", runtime_status=RuntimeStatus.COMPLETED,
        input={"city": "Tokyo"}, output=["Hello Tokyo!"], custom_status=None,
        created_time=CREATED, last_updated_time=UPDATED, run_id="run-1", history=history,
    )


def test_the_status_json_has_the_contracts_fields_in_order_and_utc_times_to_the_second() -> None:
    assert list(_status().to_json().items()) == [
        ("name", "HelloSequence"),
        ("instanceId", "job-1"),
        ("runtimeStatus", "Completed"),
        ("input", {"city": "Tokyo"}),
        ("customStatus", None),
        ("output", ["Hello Tokyo!"]),
        ("createdTime", "2026-11-26T05:18:49Z"),
        ("lastUpdatedTime", "2026-11-26T05:18:54Z"),
    ]


def test_the_status_json_lists_history_events_only_when_the_history_was_read() -> None:
    step = StepHistory(task_id="t-1", name="proj.tasks.say_hello", started=CREATED, ended=UPDATED,
                       outcome="Completed", result=["Hello Tokyo!"])
    events = _status([step]).to_json()["historyEvents"]
    assert [e["EventType"] for e in events] == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    assert events[1] == {"EventType": "TaskCompleted", "FunctionName": "proj.tasks.say_hello",
                         "TaskId": "t-1", "ScheduledTime": "2026-11-26T05:18:49.123Z",
                         "Timestamp": "2026-11-26T05:18:54.987Z"}
    with_output = _status([step]).to_json(show_history_output=True)["historyEvents"]
    assert with_output[1]["Result"] == ["Hello Tokyo!"] and with_output[2]["Result"] == ["Hello Tokyo!"]
    assert "historyEvents" not in _status().to_json()
