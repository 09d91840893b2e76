"""Singleton orchestrations for Celery: one live run per instance ID, atomically.

The public surface, grouped:

- Defining work: ``orchestrator`` (decorator), ``SingletonTask`` (the app's task
  class), ``init_app`` (registers the layer's tasks and signals on an app).
- Starting and managing: ``OrchestrationClient``, ``StatusPage``.
- Statuses: ``RuntimeStatus``, ``OrchestrationStatus``, ``new_instance_id``,
  ``validate_instance_id``.
- Settings: ``Settings``.
- Errors: ``SingletonError`` and its subclasses.
"""

from .client import OrchestrationClient, StatusPage
from .errors import (
    InstanceAlreadyExists,
    InstanceError,
    InstanceIsLive,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidContinuationToken,
    InvalidInput,
    InvalidInstanceId,
    OrchestratorNotFound,
    ServiceUnavailable,
    SingletonError,
    WaitTimeout,
)
from .orchestrator import get_orchestrator, orchestrator, orchestrator_names
from .settings import Settings
from .status import (
    OrchestrationStatus,
    RuntimeStatus,
    new_instance_id,
    validate_instance_id,
)
from .worker import SingletonTask, init_app

__all__ = [
    # defining work
    "orchestrator",
    "get_orchestrator",
    "orchestrator_names",
    "SingletonTask",
    "init_app",
    # starting and managing
    "OrchestrationClient",
    "StatusPage",
    # statuses
    "RuntimeStatus",
    "OrchestrationStatus",
    "new_instance_id",
    "validate_instance_id",
    # settings
    "Settings",
    # errors
    "SingletonError",
    "InvalidInstanceId",
    "OrchestratorNotFound",
    "InvalidInput",
    "InvalidContinuationToken",
    "InstanceError",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InstanceIsTerminal",
    "InstanceIsLive",
    "WaitTimeout",
    "ServiceUnavailable",
]
