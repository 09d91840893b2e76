"""Stuck-run recovery: send again the steps whose worker died, and fail live runs that
gave no sign of life within their lease and have nothing left to recover.

A step that passes its gate leaves its message (the delivery as the gate saw it) in
the instance's keys while it runs, and its run's entry in the ``alive`` index falls
due when the step's lease would end. A step whose lease ran out with no completion
lost its worker: the reconciler publishes the kept message again, same task id, so
the step runs again within ``step_lease + reconcile_interval`` of the kill, whatever
the broker's visibility timeout. The broker may redeliver the original message as
well (RabbitMQ does at once, Redis after its visibility timeout): the step gates make
the two harmless together (done: the stored result is handed on; busy: wait).

A run shows signs of life when a step starts or ends, at every gate verdict and while a running step's
heartbeat renews its lease; each refreshes the run's entry in its shard's ``alive``
index. A run whose messages are gone (broker flushed, an early-acked message lost
with its worker) stops refreshing it, and the reconciler fails it as lost, freeing
its ID. A run past its orchestrator's ``timeout`` fails as timed out. Suspended runs
and runs waiting for an event are silent by design and are left alone. Each pass
first re-sends the outbox entries whose publish was never confirmed (``outbox.relay``).

Steps the broker may lose before they reach their gate are kept as they are published
(``keep_published``), and sent again when they have not reached it within a step
lease (after their countdown): a group's members, whose publisher's own kept message
cannot stand for them once one of them starts (a worker that pops a message and dies
before the Redis transport records it as unacked, which it does in a second command,
leaves it nowhere), and countdown messages (a continued run's first step), which a
worker holds unacked until they are due, so a killed one leaves them to the broker's
visibility timeout. Event-timeout timers carry no run stamps, so this receiver does not
see them: ``singleton.durable.start_timer`` keeps each the same way, and the reconciler
sends one again a step lease after it was due. Any other step is handed on by the step
before it (reap.lua).

The reconciler is the ``singleton.reconcile`` task; celeryconfig schedules it with
beat (``reconcile_entry``) every ``singleton_reconcile_interval`` seconds. Every decision is made inside
one script per run, so two reconcilers at once are harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.app.task import Context
from celery.canvas import signature
from celery.signals import before_task_publish
from kombu.utils.json import dumps, loads

from .errors import ServiceUnavailable
from .outbox import relay
from .runs import RunIdentity
from .runtime import runtime
from .settings import Settings
from .signals import reconciled
from .store import ReapVerdict, Store

logger = logging.getLogger(__name__)

RECONCILE_TASK = "singleton.reconcile"
# Overdue runs examined per shard and pass; a backlog drains over the next passes.
BATCH = 100


def reconcile(
    store: Store,
    *,
    send: Callable[[str], Any] | None = None,
    resend_s: float = Settings.step_lease,
    batch: int = BATCH,
) -> Counter[ReapVerdict]:
    """Recover or fail the overdue live runs of every shard; return how many went which way.

    Args:
        store: the records.
        send: publishes one kept step message (JSON) again; ``sender(app)`` makes one.
            Without it, steps handed back are not published (store-only uses).
        resend_s: a step sent again that has not started within this is sent once more.
        batch: overdue runs examined per shard.

    Returns:
        A Counter of outcomes: resent, lost, timed_out, and parked, alive or gone for
        the runs that turned out not to be stuck.
    """
    overdue = store.due(batch)
    if not overdue:
        return Counter()
    lost = dumps("Lost: the run gave no sign of life within its lease; its messages are gone.")
    timed_out = dumps("TimedOut: the run did not finish within its orchestrator's timeout.")
    reaped = store.reap(overdue, lost_json=lost, timed_out_json=timed_out, resend_s=resend_s)
    reconciled.send(sender=store, instance_ids=overdue, outcomes=[r.outcome for r in reaped])
    for instance_id, outcome in zip(overdue, reaped, strict=True):
        if outcome.outcome in (ReapVerdict.LOST, ReapVerdict.TIMED_OUT):
            logger.warning("Failed instance %r: %s.", instance_id, outcome.outcome.replace("_", " "))
        for message in outcome.messages:
            logger.warning("Sending a step of instance %r again: its lease ran out.", instance_id)
            if send is not None:
                send(message)
    return Counter(outcome.outcome for outcome in reaped)


def sender(app: Celery) -> Callable[[str], None]:
    """Return the function that publishes a kept step message again, same task id."""

    def send(message: str) -> None:
        signature(loads(message), app=app).apply_async()

    return send


def keep_published(app: Celery) -> Callable[..., None]:
    """Return the ``before_task_publish`` receiver that keeps the messages the broker may lose.

    A run's step published as a group's member or with a countdown is kept in the
    run's steps, as its gate would keep it, before the broker has it; the reconciler
    sends it again if it has not reached its gate within a step lease of being due.
    """

    def keep(body: Any = None, exchange: str = "", routing_key: str = "",
             headers: dict[str, Any] | None = None, properties: dict[str, Any] | None = None,
             **_: Any) -> None:
        headers = headers or {}
        if not (headers.get("group") or headers.get("eta")) or len(body or ()) != 3:
            return
        identity = RunIdentity.from_stamps(headers.get("stamps") or {})
        task = app.tasks.get(headers.get("task") or "")
        if identity is None or task is None:
            return
        message = dumps(dict(_published_signature(task, body, headers, properties or {},
                                                  exchange=exchange, routing_key=routing_key)))
        rt = runtime(app)
        try:
            rt.store.keep_published(identity.instance_id, run_id=identity.run_id, task_id=headers["id"],
                                    message_json=message, wait_s=_due_in(headers) + rt.settings.step_lease)
        except ServiceUnavailable:
            # The publish goes on: the broker alone holds the step, as for any other.
            logger.warning("The store is unreachable; a step of instance %r is not kept.",
                           identity.instance_id)

    return keep


def _due_in(headers: dict[str, Any]) -> float:
    # Seconds until a countdown message is due (0 for one due now).
    eta = headers.get("eta")
    if not eta:
        return 0.0
    due = datetime.fromisoformat(eta)
    return max(0.0, (due - datetime.now(due.tzinfo or UTC)).total_seconds())


def _published_signature(task: Task, body: Any, headers: dict[str, Any], properties: dict[str, Any],
                         *, exchange: str, routing_key: str) -> Any:
    # The request a worker would build from this message (headers and the body's embed),
    # so the signature is the one the member's gate keeps.
    args, kwargs, embed = body
    delivery = {"exchange": exchange, "routing_key": routing_key, "priority": properties.get("priority")}
    request = Context({**headers, **(embed or {}), "args": args, "kwargs": kwargs,
                       "delivery_info": delivery, "reply_to": properties.get("reply_to"),
                       "correlation_id": properties.get("correlation_id")})
    return task.signature_from_request(request, args, kwargs)


def reconcile_entry(interval: float) -> dict[str, Any]:
    """Return the ``beat_schedule`` entry that runs the reconciler every `interval` seconds.

    A pass that waited longer than an interval in the queue is dropped: the next one
    comes soon enough.
    """
    return {"task": RECONCILE_TASK, "schedule": interval, "options": {"expires": interval}}


def register(app: Celery) -> None:
    """Register the reconciler task on `app`, and keep the messages the broker may lose."""
    # One receiver per app, however often init_app runs on it.
    before_task_publish.connect(keep_published(app), weak=False, dispatch_uid=f"singleton.keep.{id(app)}")

    @app.task(name=RECONCILE_TASK, bind=True, base=Task, ignore_result=True)
    def reconcile_task(self: Task) -> dict[str, int]:
        rt = runtime(self.app)
        # Re-send what stayed in an outbox first: a run whose message is on its way is
        # not lost.
        resent = relay(self.app)
        outcomes = dict(reconcile(rt.store, send=sender(self.app), resend_s=rt.settings.step_lease))
        return {**outcomes, "resent": resent} if resent else outcomes
