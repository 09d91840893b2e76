"""The exception tree: every error the library raises derives from SingletonError.

Each exception carries the data a caller needs to act on it (the instance ID, the
status it found), so the HTTP layer can map exceptions to responses in one place.
"""

from __future__ import annotations

from typing import Any


class SingletonError(Exception):
    """Root of every error raised by the singleton layer."""

    code = "singleton_error"


class InvalidInstanceId(SingletonError):
    """The instance ID breaks the contract's rules (length, characters)."""

    code = "invalid_instance_id"

    def __init__(self, instance_id: Any, reason: str) -> None:
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"Invalid instance ID {instance_id!r}: {reason}.")


class InvalidEventName(SingletonError):
    """The event name is empty, too long or contains control characters."""

    code = "invalid_event_name"

    def __init__(self, name: Any, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"Invalid event name {name!r}: {reason}.")


class OrchestratorNotFound(SingletonError):
    """No orchestrator is registered under the given name."""

    code = "orchestrator_not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"The orchestrator '{name}' does not exist.")


class InvalidInput(SingletonError):
    """The input cannot be stored as JSON, or the orchestrator rejected it."""

    code = "invalid_input"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Invalid input: {reason}")


class InvalidArgument(SingletonError):
    """An option of a call is not one it accepts (an unknown start policy, say)."""

    code = "invalid_argument"

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"Invalid {name}: {reason}.")


class InvalidContinuationToken(SingletonError):
    """A list call was given a continuation token this library did not issue."""

    code = "invalid_continuation_token"

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

    def __init__(self, instance_id: str, runtime_status: Any, run_id: str) -> None:
        self.runtime_status = runtime_status
        self.run_id = run_id
        super().__init__(instance_id, f"An instance with ID '{instance_id}' already exists.")


class InstanceNotFound(InstanceError):
    """No record exists for the instance ID."""

    code = "instance_not_found"

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, f"No instance with ID '{instance_id}' was found.")


class InstanceIsTerminal(InstanceError):
    """The operation needs a live run, but the instance has already finished."""

    code = "instance_is_terminal"

    def __init__(self, instance_id: str, runtime_status: Any) -> None:
        self.runtime_status = runtime_status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' is already {runtime_status.value}.",
        )


class InstanceIsLive(InstanceError):
    """The operation needs a finished instance, but a run is still live."""

    code = "instance_is_live"

    def __init__(self, instance_id: str, runtime_status: Any) -> None:
        self.runtime_status = runtime_status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' is still {runtime_status.value}.",
        )


class InvalidTransition(InstanceError):
    """The instance's current status does not allow the operation (suspend twice, say)."""

    code = "invalid_transition"

    def __init__(self, instance_id: str, runtime_status: Any, operation: str) -> None:
        self.runtime_status = runtime_status
        self.operation = operation
        super().__init__(
            instance_id,
            f"Cannot {operation} the instance '{instance_id}': it is {runtime_status.value}.",
        )


class NotInRun(SingletonError):
    """A run-only call (set_custom_status, say) was made outside a step of a run."""

    code = "not_in_run"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} must be called from inside a step of an orchestration run.")


class WaitTimeout(InstanceError):
    """wait_for_completion gave up before the instance reached a terminal status."""

    code = "wait_timeout"

    def __init__(self, instance_id: str, status: Any) -> None:
        self.status = status
        super().__init__(
            instance_id,
            f"The instance '{instance_id}' did not finish in time.",
        )


class ServiceUnavailable(SingletonError):
    """Redis or the broker could not be reached; nothing was left claimed."""

    code = "service_unavailable"

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        self.instance_id = instance_id
        super().__init__(message)
