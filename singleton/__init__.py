"""Singleton orchestrations for Celery: one live run per instance ID, atomically.

The public surface, grouped:

- Defining work: ``orchestrator`` (decorator), ``SingletonTask`` (the app's task
  class), ``init_app`` (registers the layer's tasks and signals on an app).
- Inside a run: ``wait_for_external_event`` and ``continue_as_new`` (canvas steps;
  ``UNSET`` marks "no default" / "no input"), ``set_custom_status`` (from a step),
  ``current_run`` (from a step: the run's ``CurrentRun``, with its fencing number).
- Starting and managing: ``OrchestrationClient``, ``StatusPage``, ``StartedRun``; start policies
  ``IfLive`` and ``IfFinished``.
- Statuses: ``RuntimeStatus``, ``OrchestrationStatus``, ``StepHistory``,
  ``new_instance_id``, ``validate_instance_id``, ``validate_event_name``.
- Observing: ``step_started`` and ``step_finished`` (signals; real executions only),
  ``start_decided`` (with ``StartOutcome``), ``gate_decided``, ``run_ended``,
  ``reconciled``, ``tick_decided``; ``singleton.metrics`` and ``singleton.tracing``.
- Settings: ``Settings`` (``init_app`` refuses contradicting timings: ``InvalidSettings``).
- Errors: ``SingletonError`` and its subclasses; ``ErrorCategory`` (what each means
  to the HTTP layer and the CLI).
"""

from .client import OrchestrationClient, StartedRun
from .durable import UNSET, continue_as_new, set_custom_status, wait_for_external_event
from .errors import (
    ErrorCategory,
    InstanceAlreadyExists,
    InstanceError,
    InstanceIsLive,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidEventName,
    InvalidInput,
    InvalidInstanceId,
    InvalidSettings,
    InvalidTransition,
    NotInRun,
    OrchestratorNotFound,
    PayloadTooLarge,
    RunReplaced,
    ServiceUnavailable,
    SingletonError,
    TooManyEvents,
    WaitTimeout,
)
from .orchestrator import get_orchestrator, orchestrator, orchestrator_names
from .policies import IfFinished, IfLive
from .queries import StatusPage
from .runs import CurrentRun, current_run
from .settings import Settings
from .signals import (
    StartOutcome,
    gate_decided,
    reconciled,
    run_ended,
    start_decided,
    step_finished,
    step_started,
    tick_decided,
)
from .status import (
    OrchestrationStatus,
    RuntimeStatus,
    StepHistory,
    new_instance_id,
    validate_event_name,
    validate_instance_id,
)
from .wiring import init_app
from .worker import SingletonTask

__all__ = [
    # defining work
    "orchestrator",
    "get_orchestrator",
    "orchestrator_names",
    "SingletonTask",
    "init_app",
    # inside a run
    "wait_for_external_event",
    "continue_as_new",
    "set_custom_status",
    "current_run",
    "CurrentRun",
    "UNSET",
    # starting and managing
    "OrchestrationClient",
    "StatusPage",
    "StartedRun",
    "IfLive",
    "IfFinished",
    # statuses
    "RuntimeStatus",
    "OrchestrationStatus",
    "StepHistory",
    "new_instance_id",
    "validate_instance_id",
    "validate_event_name",
    # observing
    "step_started",
    "step_finished",
    "start_decided",
    "StartOutcome",
    "gate_decided",
    "run_ended",
    "reconciled",
    "tick_decided",
    # settings
    "Settings",
    # errors
    "SingletonError",
    "ErrorCategory",
    "InvalidInstanceId",
    "OrchestratorNotFound",
    "InvalidInput",
    "InvalidArgument",
    "InvalidEventName",
    "InvalidContinuationToken",
    "NotInRun",
    "InvalidSettings",
    "InstanceError",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InstanceIsTerminal",
    "InstanceIsLive",
    "InvalidTransition",
    "WaitTimeout",
    "RunReplaced",
    "ServiceUnavailable",
    "PayloadTooLarge",
    "TooManyEvents",
]
