"""Runtime statuses, the status record a caller sees, and instance ID rules."""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidEventName, InvalidInstanceId

MAX_INSTANCE_ID_LENGTH = 256
_FORBIDDEN = re.compile(r"[/\\?#\x00-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class RuntimeStatus(enum.StrEnum):
    """The lifecycle states of an instance, named as in Durable Functions."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"

    @property
    def is_live(self) -> bool:
        """Return True while a run of this status holds its instance ID."""
        return self in LIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        """Return True when the run has finished and the ID is free again."""
        return not self.is_live


LIVE_STATUSES = frozenset(
    {
        RuntimeStatus.PENDING,
        RuntimeStatus.RUNNING,
        RuntimeStatus.SUSPENDED,
        RuntimeStatus.CONTINUED_AS_NEW,
    }
)


@dataclass(frozen=True)
class OrchestrationStatus:
    """A snapshot of one instance's record."""

    name: str
    instance_id: str
    runtime_status: RuntimeStatus
    input: Any
    output: Any
    custom_status: Any
    created_time: datetime
    last_updated_time: datetime
    run_id: str
    history: list[StepHistory] | None = None

    def to_json(self, *, show_history_output: bool = False) -> dict[str, Any]:
        """Return the status JSON of Durable Functions' HTTP API (the CLI's ``--json`` too).

        Times are ISO-8601 UTC to the second (``2026-11-26T05:18:49Z``). When the
        history was read, ``historyEvents`` follows: the start, one entry per step and,
        once finished, the end; each with its ``Result`` only with `show_history_output`.
        """
        body: dict[str, Any] = {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status.value,
            "input": self.input,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": _iso(self.created_time),
            "lastUpdatedTime": _iso(self.last_updated_time),
        }
        if self.history is not None:
            body["historyEvents"] = self._history_events(show_history_output)
        return body

    def _history_events(self, show_output: bool) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [{
            "EventType": "ExecutionStarted", "FunctionName": self.name,
            "Timestamp": _iso_ms(self.created_time),
        }]
        events += [step.to_json(show_output=show_output) for step in self.history or []]
        if self.runtime_status.is_terminal:
            end = {"EventType": "ExecutionCompleted", "OrchestrationStatus": self.runtime_status.value,
                   "Timestamp": _iso_ms(self.last_updated_time)}
            if show_output:
                end["Result"] = self.output
            events.append(end)
        return events


@dataclass(frozen=True)
class StepHistory:
    """One step of a run: which task, when it started and ended, and how."""

    task_id: str
    name: str
    started: datetime
    ended: datetime
    outcome: str  # Completed, Failed or TimedOut (a wait that took its default)
    result: Any

    def to_json(self, *, show_output: bool = False) -> dict[str, Any]:
        """Return the step as a Durable Functions history event (``TaskCompleted``, ...)."""
        event = {"EventType": f"Task{self.outcome}", "FunctionName": self.name, "TaskId": self.task_id,
                 "ScheduledTime": _iso_ms(self.started), "Timestamp": _iso_ms(self.ended)}
        if show_output:
            event["Result"] = self.result
        return event


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_instance_id() -> str:
    """Return a random instance ID: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def validate_instance_id(instance_id: Any) -> str:
    """Return the instance ID unchanged if it follows the contract's rules.

    Raises:
        InvalidInstanceId: it is not a string, is empty or too long, starts with
            '@', or contains '/', '\\', '?', '#' or a control character.
    """
    if not isinstance(instance_id, str):
        raise InvalidInstanceId(instance_id, "it must be a string")
    if not 1 <= len(instance_id) <= MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceId(instance_id, "it must be 1 to 256 characters long")
    if instance_id.startswith("@"):
        raise InvalidInstanceId(instance_id, "it must not start with '@'")
    try:
        instance_id.encode()  # lone surrogates cannot become Redis keys
    except UnicodeEncodeError:
        raise InvalidInstanceId(instance_id, "it must be valid Unicode text") from None
    if _FORBIDDEN.search(instance_id):
        raise InvalidInstanceId(
            instance_id, "it must not contain '/', '\\', '?', '#' or control characters"
        )
    return instance_id


def validate_event_name(name: Any) -> str:
    """Return the event name unchanged if it is 1-256 characters of printable text.

    Raises:
        InvalidEventName: it is not a string, is empty or too long, or contains a
            control character.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_INSTANCE_ID_LENGTH:
        raise InvalidEventName(name, "it must be a string of 1 to 256 characters")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidEventName(name, "it must be valid Unicode text") from None
    if _CONTROL.search(name):
        raise InvalidEventName(name, "it must not contain control characters")
    return name
