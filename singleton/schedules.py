"""Periodic singleton starts: the worker-side starter task and beat schedule entries.

Beat only publishes messages; it imports the starter task when it can (then calls
``apply_async``) and falls back to ``send_task`` when it cannot. Either way the
decision happens here, in the worker, through the core's atomic claim, so neither a
missing import nor two beat processes started by mistake can start two live runs.

Overlap policies, when a tick finds the instance's previous run still live:

- ``skip`` (default): the tick does nothing but log (INFO) and count that it skipped.
- ``buffer_one``: the first such tick takes the instance's one buffer slot and comes
  back every ``poll`` seconds (a retry of itself) until the live run has ended, then
  starts; ticks that find the slot taken are skipped. At most one tick is ever
  buffered, and a buffered tick gives up after ``max_wait`` seconds.
- ``terminate_other``: the live run is terminated and the new run claimed in one step.

Flower's ``async-apply`` and ``send-task`` of ``singleton.start`` are starts of the
same kind: a duplicate is refused (skipped), never run twice.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from celery import Celery, Task

from .client import OrchestrationClient
from .errors import InstanceAlreadyExists
from .orchestrator import get_orchestrator
from .policies import IfLive
from .runtime import runtime
from .signals import tick_decided
from .status import validate_instance_id

logger = logging.getLogger(__name__)

START_TASK = "singleton.start"


class Overlap(enum.StrEnum):
    """What a tick does when it finds the instance's previous run still live."""

    SKIP = "skip"  # log and count the skipped tick
    BUFFER_ONE = "buffer_one"  # wait in the instance's one buffer slot, then start
    TERMINATE_OTHER = "terminate_other"  # terminate the live run and start, in one claim


class TickOutcome(enum.StrEnum):
    """How a tick ended; counted per instance (``Store.tick_counts``)."""

    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"


# A buffered tick looks again this often, and gives up after this long.
BUFFER_POLL_S = 1.0
BUFFER_MAX_WAIT_S = 3600.0


def singleton_entry(
    name: str,
    instance_id: str,
    *,
    schedule: Any,
    input: Any = None,
    overlap: str = "skip",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a ``beat_schedule`` entry that starts `name` as instance `instance_id`.

    Args:
        name: a registered orchestrator's name.
        instance_id: the fixed instance ID every tick starts.
        schedule: seconds, a ``timedelta`` or a ``crontab``, as for any beat entry.
        input: the JSON-serialisable input of every run.
        overlap: what a tick does while the previous run is live: ``skip``,
            ``buffer_one`` or ``terminate_other``.
        options: extra ``apply_async`` options of the tick message (queue, expires...).

    Raises:
        ValueError: the overlap policy is unknown.
        InvalidInstanceId: the instance ID breaks the rules.
    """
    _check_policy(overlap)
    validate_instance_id(instance_id)
    return {
        "task": START_TASK,
        "schedule": schedule,
        "args": (name, instance_id),
        "kwargs": {"input": input, "overlap": overlap},
        "options": dict(options or {}),
    }


def _check_policy(overlap: str) -> Overlap:
    try:
        return Overlap(overlap)
    except ValueError:
        raise ValueError(f"overlap must be one of {', '.join(Overlap)}, not {overlap!r}") from None


class Tick:
    """One execution of the starter task: one attempt to start an instance's next run."""

    def __init__(self, task: Task, name: str, instance_id: str, input: Any, overlap: str) -> None:
        self.task, self.name, self.input = task, name, input
        self.overlap = _check_policy(overlap)
        self.instance_id = validate_instance_id(instance_id)
        self.client = OrchestrationClient(task.app)
        self.store = runtime(task.app).store
        # The buffered tick is the task holding the slot; its retries keep its id.
        self.token = task.request.id or ""

    def run(self, poll: float, max_wait: float) -> dict[str, Any]:
        """Start the run or apply the overlap policy; return what happened."""
        get_orchestrator(self.name)  # an unknown name fails the tick, whatever the policy
        buffered = self.overlap is Overlap.BUFFER_ONE and self.task.request.retries > 0
        if buffered and not self.store.hold_buffer(self.instance_id, token=self.token, ttl_s=_slot_ttl(poll)):
            return self._outcome(TickOutcome.SKIPPED, "its buffer slot expired")
        try:
            self._start()
        except InstanceAlreadyExists as exc:
            return self._refused(exc, poll, max_wait)
        if buffered:
            self.store.release_buffer(self.instance_id, token=self.token)
        return self._outcome(TickOutcome.STARTED, "buffered tick" if buffered else "")

    def _start(self) -> None:
        # The tick's task id is the request ID: a redelivered tick finds the run it started.
        live = IfLive.TERMINATE_EXISTING if self.overlap is Overlap.TERMINATE_OTHER else IfLive.FAIL
        self.client.start_new(self.name, self.instance_id, self.input, if_live=live, request_id=self.token)

    def _refused(self, exc: InstanceAlreadyExists, poll: float, max_wait: float) -> dict[str, Any]:
        live = f"run {exc.run_id} is still {exc.runtime_status}"
        if self.overlap is not Overlap.BUFFER_ONE:
            return self._outcome(TickOutcome.SKIPPED, live)
        waited = self.task.request.retries * poll
        if waited >= max_wait:
            self.store.release_buffer(self.instance_id, token=self.token)
            return self._outcome(TickOutcome.SKIPPED, f"{live} after {waited:.0f} s in the buffer")
        if self.task.request.retries == 0:
            if not self.store.hold_buffer(self.instance_id, token=self.token, ttl_s=_slot_ttl(poll)):
                return self._outcome(TickOutcome.SKIPPED, f"{live} and a tick is already buffered")
            self._outcome(TickOutcome.BUFFERED, live)
        # Retry keeps the task id, which is the slot's token.
        raise self.task.retry(countdown=poll)

    def _outcome(self, outcome: TickOutcome, detail: str) -> dict[str, Any]:
        self.store.count_tick(self.instance_id, outcome=outcome)
        tick_decided.send(sender=self.task, orchestrator=self.name, outcome=outcome)
        logger.info(
            "Tick of %s for instance %r %s%s.",
            self.name, self.instance_id, outcome, f" ({detail})" if detail else "",
        )
        return {"instance_id": self.instance_id, "outcome": outcome}


def _slot_ttl(poll: float) -> float:
    # Long enough to survive a late retry, short enough that a lost one frees the slot.
    return 3 * poll + 10


def register_starter(app: Celery) -> None:
    """Register the ``singleton.start`` task (the beat and Flower starter) on `app`."""

    # No retry limit: a buffered tick bounds its own wait (max_wait).
    @app.task(name=START_TASK, bind=True, base=Task, max_retries=None)
    def start(
        self: Task,
        name: str,
        instance_id: str,
        input: Any = None,
        overlap: str = "skip",
        poll: float = BUFFER_POLL_S,
        max_wait: float = BUFFER_MAX_WAIT_S,
    ) -> dict[str, Any]:
        """Start `name` as `instance_id` unless its run is live; then apply `overlap`."""
        return Tick(self, name, instance_id, input, overlap).run(poll, max_wait)
