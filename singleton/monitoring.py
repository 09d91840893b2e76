"""Run labels for monitors: Flower sees each step's instance ID and orchestrator.

Flower shows what task events carry, and events carry neither headers nor stamps,
only ``argsrepr`` and ``kwargsrepr``. ``RunLabelAMQP`` (the app's ``amqp`` class)
writes a step's run identity at the front of its ``kwargsrepr`` whenever a message
of a run is built: the first step at start, later chain steps, retries, replacements
and group members alike, and the ``task-sent`` event with it. The step's real
keyword arguments are unchanged; only their display gains three keys::

    {'singleton_instance': 'nightly', 'singleton_orchestrator': 'Report', 'singleton_run': '5f0c...'}

Flower's search then finds every task of an instance with
``kwargs:singleton_instance=<id>`` (or the bare ID as free text).
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from .runs import STAMP, STAMP_INSTANCE, STAMP_NAME, STAMP_RUN, RunIdentity

# Celery's own limit for the display of keyword arguments.
KWARGSREPR_MAXSIZE = 1024


class RunLabelAMQP(AMQP):
    """Celery's AMQP helper, labelling each message of a run in its ``kwargsrepr``.

    Use it as the app's amqp class: ``Celery(..., amqp="singleton.monitoring:RunLabelAMQP")``.
    """

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:
        """Build a task message; label it when its stamps name a run."""
        stamp = _single(options.get(STAMP))
        identity = RunIdentity.from_stamp_value(stamp) if isinstance(stamp, str) and stamp else None
        if identity is not None and options.get("kwargsrepr") is None:
            options["kwargsrepr"] = run_kwargsrepr(
                identity.instance_id, identity.name, identity.run_id, kwargs)
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


def run_kwargsrepr(instance_id: str, name: Any, run_id: Any, kwargs: Any) -> str:
    """Return the display of `kwargs` with the run's identity first."""
    label = {STAMP_INSTANCE: instance_id, STAMP_NAME: name or "", STAMP_RUN: run_id or ""}
    if kwargs:
        return saferepr({**label, **kwargs}, KWARGSREPR_MAXSIZE)
    # Most steps take no keyword arguments: repr() of a short dict costs a tenth of saferepr.
    return repr(label)


def _single(value: Any) -> Any:
    # Stamps may come back as one-element lists.
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value
