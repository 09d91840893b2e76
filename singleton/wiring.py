"""Wiring: ``init_app`` registers the singleton layer's tasks and signal handlers on an app.

This is the top of the layer's imports: it builds on every module that registers a
task, and nothing in the layer imports it back.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.signals import task_failure, task_revoked

from . import durable, logs, metrics, recovery, schedules, tracing
from .runs import COMPLETE_TASK
from .worker import complete_run, fail_run, revoke_run


def init_app(app: Celery) -> None:
    """Register the singleton layer's tasks and signal handlers on a Celery app."""

    # Ends a run whose canvas has no single last task (it ends in a group), or whose
    # last task replaced itself. It needs no step gate: end_run is itself fenced on the
    # run ID and idempotent, so a stale or redelivered completion writes nothing.
    @app.task(name=COMPLETE_TASK, bind=True, base=Task)
    def complete(self: Task, result: Any) -> None:
        complete_run(self, result)

    def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        # Celery sends task_failure once per final failure of a task: from the pool child
        # when the step raised, and from the worker's main process (request on the stack)
        # when the child was lost or hit its hard time limit. Retries are not failures.
        if sender is None or sender.app is not app:
            return
        fail_run(app, sender.request, exception)

    def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        if sender is None or sender.app is not app:
            return
        revoke_run(app, request)

    durable.register(app)
    recovery.register(app)
    task_failure.connect(on_failure, weak=False)
    task_revoked.connect(on_revoked, weak=False)
    # Operations: the beat and Flower starter task, and log records naming their run.
    schedules.register_starter(app)
    logs.install()
    # Observability: metrics fed by the layer's signals; traces only when configured.
    metrics.install(app)
    tracing.install(app)
