"""Wiring: ``init_app`` registers the singleton layer's tasks and signal handlers on an app.

This is the top of the layer's imports: it builds on every module that registers a
task, and nothing in the layer imports it back.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, bootsteps
from celery.signals import task_failure, task_revoked

from . import durable, logs, metrics, recovery, schedules, tracing
from .errors import InvalidSettings
from .runs import COMPLETE_TASK
from .settings import Settings, check_timings
from .worker import complete_run, fail_run, revoke_run


def init_app(app: Celery) -> None:
    """Register the singleton layer's tasks and signal handlers on a Celery app.

    The timing settings are checked against each other and the broker's timeouts
    when the configuration is read: here if it already was, else when a worker
    starts (it exits with the one line) and when the layer is first used in a
    process (``runtime``).

    Raises:
        InvalidSettings: the app's configuration was read and its timings contradict
            each other (one line says which); the app must not start with them.
    """
    if app.configured:
        check_timings(Settings.from_conf(app.conf), app.conf)
    app.steps["worker"].add(TimingCheck)

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


class TimingCheck(bootsteps.Step):
    """A worker boot step: refuse to start, with one line, on contradicting timings."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        try:
            check_timings(Settings.from_conf(parent.app.conf), parent.app.conf)
        except InvalidSettings as exc:
            raise SystemExit(f"Refusing to start: {exc}") from None
