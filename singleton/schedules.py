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

import logging
from typing import Any

from celery import Celery, Task

from .errors import InstanceAlreadyExists
from .orchestrator import get_orchestrator
from .signals import tick_decided
from .status import validate_instance_id
from .worker import runtime

logger = logging.getLogger(__name__)

START_TASK = "singleton.start"
OVERLAP_POLICIES = ("skip", "buffer_one", "terminate_other")
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


def _check_policy(overlap: str) -> None:
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, not {overlap!r}")


class Tick:
    """One execution of the starter task: one attempt to start an instance's next run."""

    def __init__(self, task: Task, name: str, instance_id: str, input: Any, overlap: str) -> None:
        from .client import OrchestrationClient  # the client imports the worker module

        _check_policy(overlap)
        self.task, self.name, self.input, self.overlap = task, name, input, overlap
        self.instance_id = validate_instance_id(instance_id)
        self.client = OrchestrationClient(task.app)
        self.store = runtime(task.app).store
        # The buffered tick is the task holding the slot; its retries keep its id.
        self.token = task.request.id or ""

    def run(self, poll: float, max_wait: float) -> dict[str, Any]:
        """Start the run or apply the overlap policy; return what happened."""
        get_orchestrator(self.name)  # an unknown name fails the tick, whatever the policy
        buffered = self.overlap == "buffer_one" and self.task.request.retries > 0
        if buffered and not self.store.hold_buffer(self.instance_id, self.token, _slot_ttl(poll)):
            return self._outcome("skipped", "its buffer slot expired")
        try:
            self._start()
        except InstanceAlreadyExists as exc:
            return self._refused(exc, poll, max_wait)
        if buffered:
            self.store.release_buffer(self.instance_id, self.token)
        return self._outcome("started", "buffered tick" if buffered else "")

    def _start(self) -> None:
        # The tick's task id is the request ID: a redelivered tick finds the run it started.
        live = "terminate_existing" if self.overlap == "terminate_other" else "fail"
        self.client.start_new(self.name, self.instance_id, self.input, if_live=live, request_id=self.token)

    def _refused(self, exc: InstanceAlreadyExists, poll: float, max_wait: float) -> dict[str, Any]:
        live = f"run {exc.run_id} is still {exc.runtime_status}"
        if self.overlap != "buffer_one":
            return self._outcome("skipped", live)
        waited = self.task.request.retries * poll
        if waited >= max_wait:
            self.store.release_buffer(self.instance_id, self.token)
            return self._outcome("skipped", f"{live} after {waited:.0f} s in the buffer")
        if self.task.request.retries == 0:
            if not self.store.hold_buffer(self.instance_id, self.token, _slot_ttl(poll)):
                return self._outcome("skipped", f"{live} and a tick is already buffered")
            self._outcome("buffered", live)
        # Retry keeps the task id, which is the slot's token.
        raise self.task.retry(countdown=poll)

    def _outcome(self, outcome: str, detail: str) -> dict[str, Any]:
        self.store.count_tick(self.instance_id, outcome)
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
