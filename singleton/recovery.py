"""Stuck-run recovery: fail live runs that gave no sign of life within their lease.

A run shows signs of life when a step starts or ends and while a running step's
heartbeat renews its lease; each refreshes the run's entry in its shard's ``alive``
index. A run whose messages are gone (broker flushed, an early-acked message lost
with its worker) stops refreshing it, and the reconciler fails it as lost, freeing
its ID. A run past its orchestrator's ``timeout`` fails as timed out. Suspended runs
and runs waiting for an event are silent by design and are left alone. Each pass
first re-sends the outbox entries whose publish was never confirmed (``outbox.relay``).

The reconciler is the ``singleton.reconcile`` task; celeryconfig schedules it with
beat (``reconcile_entry``) every ``singleton_reconcile_interval`` seconds. Every decision is made inside
one script per run, so two reconcilers at once are harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from celery import Celery, Task
from kombu.utils.json import dumps

from .outbox import relay
from .runtime import runtime
from .store import ReapVerdict, Store

logger = logging.getLogger(__name__)

RECONCILE_TASK = "singleton.reconcile"
# Overdue runs examined per shard and pass; a backlog drains over the next passes.
BATCH = 100


def reconcile(store: Store, *, batch: int = BATCH) -> Counter[ReapVerdict]:
    """Fail the overdue live runs of every shard; return how many ended which way.

    Returns:
        A Counter of outcomes: lost, timed_out, and parked, alive or gone for the
        runs that turned out not to be stuck.
    """
    overdue = store.due(batch)
    if not overdue:
        return Counter()
    lost = dumps("Lost: the run gave no sign of life within its lease; its messages are gone.")
    timed_out = dumps("TimedOut: the run did not finish within its orchestrator's timeout.")
    outcomes = store.reap(overdue, lost_json=lost, timed_out_json=timed_out)
    for instance_id, outcome in zip(overdue, outcomes, strict=True):
        if outcome in (ReapVerdict.LOST, ReapVerdict.TIMED_OUT):
            logger.warning("Failed instance %r: %s.", instance_id, outcome.replace("_", " "))
    return Counter(outcomes)


def reconcile_entry(interval: float) -> dict[str, Any]:
    """Return the ``beat_schedule`` entry that runs the reconciler every `interval` seconds.

    A pass that waited longer than an interval in the queue is dropped: the next one
    comes soon enough.
    """
    return {"task": RECONCILE_TASK, "schedule": interval, "options": {"expires": interval}}


def register(app: Celery) -> None:
    """Register the reconciler task on `app`."""

    @app.task(name=RECONCILE_TASK, bind=True, base=Task, ignore_result=True)
    def reconcile_task(self: Task) -> dict[str, int]:
        # Re-send what stayed in an outbox first: a run whose message is on its way is
        # not lost.
        resent = relay(self.app)
        outcomes = dict(reconcile(runtime(self.app).store))
        return {**outcomes, "resent": resent} if resent else outcomes
