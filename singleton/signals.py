"""Signals of the singleton layer, for observers (logs, metrics, the chaos run's log).

Both are sent in the worker process that runs the step, only for deliveries that
passed the step gate (the run is current and live, and this delivery holds the
step's lease): they mark real executions of user code, not skipped deliveries.

    step_started(sender=task, instance_id, run_id, task_id)
    step_finished(sender=task, instance_id, run_id, task_id, failed)
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

step_started = Signal(
    name="singleton.step_started", providing_args={"instance_id", "run_id", "task_id"}
)
step_finished = Signal(
    name="singleton.step_finished", providing_args={"instance_id", "run_id", "task_id", "failed"}
)
