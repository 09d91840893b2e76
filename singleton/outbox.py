"""The outbox relay: publish what a script kept in an instance's outbox and nobody sent.

A script that decides a message must be published (a claim, an event, a timeout, a
resume, a continue-as-new) keeps it in the instance's outbox in the same step; its caller publishes it
right after. When that caller dies first, or its publish fails, the message stays
there and the reconciler's pass sends it again (``relay``), once per grace period
until it is confirmed: under the same task ids, so the step gates dedupe a message
that did get through.
"""

from __future__ import annotations

import logging
import time

from celery import Celery
from kombu.utils.json import loads

from .durable import publish_continued, publish_release
from .runs import publish_message
from .runtime import runtime
from .status import RuntimeStatus
from .store import START_ENTRY, Release, Verdict

logger = logging.getLogger(__name__)

# The outbox entry of a continued run's canvas is named after the run (continue.lua).
CONTINUE_PREFIX = "cont:"

# Instances examined per shard and pass; a backlog drains over the next passes.
BATCH = 100


def relay(app: Celery, *, batch: int = BATCH) -> int:
    """Publish the outbox entries whose grace period is over; return how many went out."""
    published = 0
    for instance_id, entries in runtime(app).store.outbox_due(batch).items():
        for entry, message_json in entries:
            try:
                resend(app, instance_id, entry=entry, message_json=message_json)
            except Exception as exc:  # the broker may still be away: the next pass tries again
                logger.warning("Could not re-send the outbox entry %r of %r: %s", entry, instance_id, exc)
            else:
                published += 1
    return published


def resend(app: Celery, instance_id: str, *, entry: str, message_json: str) -> None:
    """Publish one outbox entry of `instance_id` and clear it (only if it is unchanged)."""
    store = runtime(app).store
    if entry == START_ENTRY:
        publish_message(app, loads(message_json), ignore_result=True)
        store.sent(instance_id, entry=entry, message_json=message_json)
        return
    if entry.startswith(CONTINUE_PREFIX):
        # A continued run whose canvas was never confirmed published: the record holds
        # its input; the countdown left runs from the continue step's own moment.
        run_id, record = entry[len(CONTINUE_PREFIX):], store.read(instance_id) or {}
        if record.get("run") == run_id and record.get("status") == RuntimeStatus.CONTINUED_AS_NEW:
            left = int(loads(message_json)["due"]) / 1_000_000 - time.time()
            publish_continued(app, instance_id, record["name"], run_id, loads(record["input"]),
                              max(0.0, left))
        store.sent(instance_id, entry=entry, message_json=message_json)
        return
    held = loads(message_json)
    # A resume's entry also holds every delivery its suspend parked ("steps"); Lua's
    # JSON encoder writes an empty list as {}, so none is read as no steps.
    steps = tuple(held.get("steps") or ())
    publish_release(app, instance_id,
                    Release(Verdict.RELEASE, "", held["park"], held["value"], entry, steps))
