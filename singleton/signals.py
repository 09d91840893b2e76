"""Signals of the singleton layer, for observers (logs, metrics, traces, the chaos log).

Each marks one decision of the layer, sent once, in the process that made it. None
carries user data; the instance ID goes only where an observer must look something
up (it must never become a metric label).

Steps (worker; only deliveries that passed the step gate, i.e. real executions):

    step_started(sender=task, instance_id, run_id, task_id)
    step_finished(sender=task, instance_id, run_id, task_id, failed)

Decisions:

    start_decided(sender=client, orchestrator, outcome, seconds)
        one per ``start_new`` call; outcome is a ``StartOutcome``; seconds is the
        claim's round trip as the client saw it (None when no claim was made).
    gate_decided(sender=task, verdict)
        one per delivery of a step of a run: the step gate's verdict (run, stale,
        busy, done, parked, suspended, continued).
    run_ended(sender, store, instance_id, orchestrator, status)
        a run reached a terminal status; orchestrator is "" when the caller does not
        know it (an observer may read it from `store`).
    reconciled(sender=store, instance_ids, outcomes)
        one reconciler pass: each examined run's outcome (lost, timed_out, parked,
        alive, gone), in the order of `instance_ids`.
    tick_decided(sender=task, orchestrator, outcome)
        one beat (or Flower) tick of the starter task: started, skipped or buffered.
"""

from __future__ import annotations

import enum
import time
from typing import Any

from celery.utils.dispatch import Signal

from .errors import InstanceAlreadyExists, OrchestratorNotFound, ServiceUnavailable, SingletonError
from .orchestrator import get_orchestrator

step_started = Signal(
    name="singleton.step_started", providing_args={"instance_id", "run_id", "task_id"}
)
step_finished = Signal(
    name="singleton.step_finished", providing_args={"instance_id", "run_id", "task_id", "failed"}
)
start_decided = Signal(
    name="singleton.start_decided", providing_args={"orchestrator", "outcome", "seconds"}
)
gate_decided = Signal(name="singleton.gate_decided", providing_args={"verdict"})
run_ended = Signal(
    name="singleton.run_ended", providing_args={"store", "instance_id", "orchestrator", "status"}
)
reconciled = Signal(name="singleton.reconciled", providing_args={"instance_ids", "outcomes"})
tick_decided = Signal(name="singleton.tick_decided", providing_args={"orchestrator", "outcome"})


class StartOutcome(enum.StrEnum):
    """How one ``start_new`` call ended."""

    STARTED = "started"
    REFUSED_LIVE = "refused_live"  # a live run holds the ID (409)
    REFUSED_POLICY = "refused_policy"  # if_finished keeps the finished run (409)
    REPLAYED = "replayed"  # the run on record answers (idempotent retry, use_existing)
    INVALID = "invalid"  # bad name, ID, input or option: nothing was claimed
    UNAVAILABLE = "unavailable"  # Redis or the broker failed


# The claim script's reply -> the start's outcome, when nothing fails afterwards.
_CLAIM_OUTCOMES = {
    "claimed": StartOutcome.STARTED,
    "existing": StartOutcome.REPLAYED,
    "refused": StartOutcome.REFUSED_LIVE,
    "rejected": StartOutcome.REFUSED_POLICY,
}


class StartDecision:
    """Collects how one start went and sends ``start_decided`` once, at its end.

    The client times its claim through ``claim()`` and calls ``send()`` when the
    start returns or raises; the outcome follows from the claim's reply and the
    exception, if any.
    """

    __slots__ = ("claim_outcome", "orchestrator", "seconds")

    def __init__(self, orchestrator: str) -> None:
        self.orchestrator = orchestrator
        self.claim_outcome: str | None = None
        self.seconds: float | None = None

    def claim(self, claim: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the store's claim with the arguments given; note its reply and time."""
        began = time.perf_counter()
        try:
            result = claim(*args, **kwargs)
        finally:
            self.seconds = time.perf_counter() - began
        self.claim_outcome = result.outcome
        return result

    def outcome(self, error: BaseException | None) -> StartOutcome | None:
        """Return the start's outcome, given the exception it raised (or None).

        None for an exception the layer does not raise (a bug, KeyboardInterrupt):
        such a start is not counted as any outcome.
        """
        if isinstance(error, ServiceUnavailable):
            return StartOutcome.UNAVAILABLE
        if isinstance(error, InstanceAlreadyExists) or error is None:
            return _CLAIM_OUTCOMES.get(self.claim_outcome or "", StartOutcome.INVALID)
        return StartOutcome.INVALID if isinstance(error, SingletonError) else None

    def send(self, sender: Any, error: BaseException | None) -> None:
        """Send ``start_decided``; an unregistered orchestrator's name is not passed on."""
        outcome = self.outcome(error) if start_decided.receivers else None
        if outcome is None:
            return
        start_decided.send(sender=sender, orchestrator=_registered(self.orchestrator), outcome=outcome,
                           seconds=self.seconds)


def _registered(name: Any) -> str:
    # A caller's unknown name must not become a label value: "" stands for any of them.
    try:
        return get_orchestrator(name).name
    except OrchestratorNotFound:
        return ""


# A release script's outcome -> the status it ended the run with.
_RELEASE_ENDINGS = {"completed": "Completed", "failed": "Failed"}


def send_release_ended(sender: Any, store: Any, instance_id: str, outcome: str) -> None:
    """Send ``run_ended`` when an event, timeout or resume script ended the run."""
    status = _RELEASE_ENDINGS.get(outcome)
    if status is not None:
        run_ended.send(sender=sender, store=store, instance_id=instance_id, orchestrator="", status=status)
