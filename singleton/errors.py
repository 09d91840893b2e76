"""The exception tree: every error the library raises derives from SingletonError.

Each exception carries the data a caller needs to act on it (the instance ID, the
status it found) and a ``category`` saying what kind of refusal it is. The HTTP layer
and the CLI derive their status codes and exit codes from the category alone, so an
error means the same thing through either.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCategory(enum.StrEnum):
    """What kind of refusal an error is, whatever the surface that reports it."""

    BAD_INPUT = "bad_input"  # the call's arguments break a rule; fix them and retry
    NOT_FOUND = "not_found"  # no such orchestrator or instance
    CONFLICT = "conflict"  # the instance's current run keeps the ID or refuses the change
    PRECONDITION_FAILED = "precondition_failed"  # the instance must first finish
    GONE = "gone"  # the instance has finished; the operation needs a live run
    TIMEOUT = "timeout"  # a wait ended before the instance finished
    UNAVAILABLE = "unavailable"  # Redis or the broker is unreachable; retry later
    INTERNAL = "internal"  # a misuse of the library or an unexpected failure
    TOO_LARGE = "too_large"  # a payload (input, event data) is over its size limit
    TOO_MANY = "too_many"  # a per-instance limit is reached; retry once it drains


class SingletonError(Exception):
    """Root of every error raised by the singleton layer."""

    code = "singleton_error"
    category = ErrorCategory.INTERNAL


class InvalidInstanceId(SingletonError):
    """The instance ID breaks the contract's rules (length, characters)."""

    code = "invalid_instance_id"
    category = ErrorCategory.BAD_INPUT

    def __init__(self, instance_id: Any, reason: str) -> None:
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"Invalid instance ID {instance_id!r}: {reason}.")


class InvalidEventName(SingletonError):
    """The event name is empty, too long or contains control characters."""

    code = "invalid_event_name"
    category = ErrorCategory.BAD_INPUT

    def __init__(self, name: Any, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"Invalid event name {name!r}: {reason}.")


class OrchestratorNotFound(SingletonError):
    """No orchestrator is registered under the given name."""

    code = "orchestrator_not_found"
    category = ErrorCategory.NOT_FOUND

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"The orchestrator '{name}' does not exist.")


class InvalidInput(SingletonError):
    """The input cannot be stored as JSON, or the orchestrator rejected it."""

    code = "invalid_input"
    category = ErrorCategory.BAD_INPUT

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Invalid input: {reason}")


class InvalidArgument(SingletonError):
    """An option of a call is not one it accepts (an unknown start policy, say)."""

    code = "invalid_argument"
    category = ErrorCategory.BAD_INPUT

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"Invalid {name}: {reason}.")


class InvalidContinuationToken(SingletonError):
    """A list call was given a continuation token this library did not issue."""

    code = "invalid_continuation_token"
    category = ErrorCategory.BAD_INPUT

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__("The continuation token is not valid.")


class InstanceError(SingletonError):
    """An error about one existing or missing instance."""

    def __init__(self, instance_id: str, message: str) -> None:
        self.instance_id = instance_id
        super().__init__(message)


class InstanceAlreadyExists(InstanceError):
    """A start was refused because a live run holds the instance ID."""

    code = "instance_already_exists"
    category = ErrorCategory.CONFLICT

    def __init__(self, instance_id: str, runtime_status: Any, run_id: str) -> None:
        self.runtime_status = runtime_status
        self.run_id = run_id
        super().__init__(instance_id, f"An instance with ID '{instance_id}' already exists.")


class InstanceNotFound(InstanceError):
    """No record exists for the instance ID."""

    code = "instance_not_found"
    category = ErrorCategory.NOT_FOUND

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, f"No instance with ID '{instance_id}' was found.")


class InstanceIsTerminal(InstanceError):
    """The operation needs a live run, but the instance has already finished."""

    code = "instance_is_terminal"
    category = ErrorCategory.GONE

    def __init__(self, instance_id: str, runtime_status: Any) -> None:
        self.runtime_status = runtime_status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' is already {runtime_status.value}.",
        )


class InstanceIsLive(InstanceError):
    """The operation needs a finished instance, but a run is still live."""

    code = "instance_is_live"
    category = ErrorCategory.PRECONDITION_FAILED

    def __init__(self, instance_id: str, runtime_status: Any) -> None:
        self.runtime_status = runtime_status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' is still {runtime_status.value}.",
        )


class InvalidTransition(InstanceError):
    """The instance's current status does not allow the operation (suspend twice, say)."""

    code = "invalid_transition"
    category = ErrorCategory.CONFLICT

    def __init__(self, instance_id: str, runtime_status: Any, operation: str) -> None:
        self.runtime_status = runtime_status
        self.operation = operation
        super().__init__(
            instance_id,
            f"Cannot {operation} the instance '{instance_id}': it is {runtime_status.value}.",
        )


class InvalidSettings(SingletonError):
    """Timing settings that contradict each other: the app refuses to start with them."""

    code = "invalid_settings"
    category = ErrorCategory.INTERNAL

    def __init__(self, setting: str, reason: str) -> None:
        self.setting, self.reason = setting, reason
        super().__init__(f"singleton_{setting}: {reason}")


class NotInRun(SingletonError):
    """A run-only call (set_custom_status, say) was made outside a step of a run."""

    code = "not_in_run"
    category = ErrorCategory.INTERNAL

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} must be called from inside a step of an orchestration run.")


class WaitTimeout(InstanceError):
    """wait_for_completion gave up before the instance reached a terminal status."""

    code = "wait_timeout"
    category = ErrorCategory.TIMEOUT

    def __init__(self, instance_id: str, status: Any) -> None:
        self.status = status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' did not finish in time.",
        )


class RunReplaced(InstanceError):
    """A wait for one run found another run holding the instance ID: that run ended."""

    code = "run_replaced"
    category = ErrorCategory.CONFLICT

    def __init__(self, instance_id: str, run_id: str, status: Any) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(
            instance_id,
            f"The run '{run_id}' of instance '{instance_id}' was replaced by another run.",
        )


class PayloadTooLarge(SingletonError):
    """A start's input or an event's data is larger than ``singleton_max_payload`` allows."""

    code = "payload_too_large"
    category = ErrorCategory.TOO_LARGE

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what, self.size, self.limit = what, size, limit
        super().__init__(f"The {what} is {size} bytes as JSON; at most {limit} are accepted.")


class TooManyEvents(InstanceError):
    """The instance already buffers ``singleton_max_events`` events; nothing was added."""

    code = "too_many_events"
    category = ErrorCategory.TOO_MANY

    def __init__(self, instance_id: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' already buffers {limit} events that no wait took.",
        )


class ServiceUnavailable(SingletonError):
    """Redis or the broker could not be reached; nothing was left claimed."""

    code = "service_unavailable"
    category = ErrorCategory.UNAVAILABLE

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        self.instance_id = instance_id
        super().__init__(message)
