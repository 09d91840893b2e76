"""Durable features inside a run: external events, continue-as-new, custom status, timers.

``wait_for_external_event`` and ``continue_as_new`` return signatures to put in an
orchestrator's canvas; ``set_custom_status`` is called from inside a step. A waiting
run holds no worker slot: the wait step parks the rest of its chain in the record and
stops (``Ignore``); ``raise_event`` takes it back out (one script) and publishes it.
Timers (event timeouts, delays between eternal cycles) are countdown messages that
hop in steps shorter than the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import Celery, Task, current_task
from celery.canvas import Signature, signature
from celery.exceptions import Ignore
from kombu.utils.json import dumps, loads

from .errors import InvalidInput, NotInRun, ServiceUnavailable
from .orchestrator import get_orchestrator
from .runs import RunIdentity, apply_run, broker_countdown, run_canvas
from .runtime import Runtime, runtime
from .signals import send_release_ended
from .status import RuntimeStatus, validate_event_name
from .store import Release, StepVerdict, Verdict
from .worker import SingletonTask

logger = logging.getLogger(__name__)

WAIT_TASK = "singleton.wait_for_external_event"
CONTINUE_TASK = "singleton.continue_as_new"
TIMER_TASK = "singleton.timer"
# An event timeout's timer's task id: this prefix, then its wait step's task id. The
# reconciler (reap.lua) tells a kept timer from a kept step by it.
TIMER_ID_PREFIX = "timer:"


# -- canvas steps -----------------------------------------------------------------
class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "no value given", where None is a value


def wait_for_external_event(name: str, *, timeout: float | None = None, default: Any = UNSET) -> Signature:
    """Return a step that parks the run until event `name` arrives; its data is the result.

    Args:
        name: the event name (1-256 characters, no control characters).
        timeout: seconds to wait; None waits for ever.
        default: the value to continue with when the timeout passes; without it, a
            timeout fails the run ("EventTimeout: ...").

    Returns:
        An immutable signature: the previous step's result is not its input.
    """
    validate_event_name(name)
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")
    has_default = default is not UNSET
    options = {"name": name, "timeout": timeout, "has_default": has_default,
               "default": default if has_default else None}
    return signature(WAIT_TASK, kwargs=options, immutable=True)


def continue_as_new(input: Any = UNSET, *, delay: float = 0) -> Signature:
    """Return a last step that restarts the instance as a new run, without freeing its ID.

    ``continue_as_new(value)`` gives the new run that input; ``continue_as_new()``
    gives it the previous step's result. The new run's canvas is published after
    `delay` seconds (a countdown, not a sleeping worker).
    """
    if delay < 0:
        raise ValueError("delay must not be negative")
    has_input = input is not UNSET
    options = {"delay": delay, "has_input": has_input, "input": input if has_input else None}
    return signature(CONTINUE_TASK, kwargs=options, immutable=has_input)


def set_custom_status(value: Any) -> bool:
    """Set the current run's custom status (any JSON value) from inside a step.

    Returns:
        False if the run is no longer the instance's current, live run.

    Raises:
        NotInRun: called outside a step of an orchestration run.
    """
    task = current_task
    identity = RunIdentity.from_request(task.request) if task else None
    if identity is None:
        raise NotInRun("set_custom_status")
    store = runtime(task.app).store
    return store.set_custom_status(identity.instance_id, run_id=identity.run_id, value_json=dumps(value))


# -- publishing what was parked -----------------------------------------------------
def publish_release(app: Celery, instance_id: str, release: Release) -> None:
    """Publish what a script handed back (event, timeout or resume): the rest of a chain
    whose wait ended, and every delivery a suspend parked.

    The script kept it in the instance's outbox (``release.entry``); it is cleared once
    the broker took it.

    Raises:
        ServiceUnavailable: the broker refused one; the entry stays in the outbox and
            the reconciler publishes all of it again once the broker is back (same task
            ids: the gates recognise what did get through).
    """
    parks = [(release.park, release.value)] if release.park else []
    parks += [(step, "") for step in release.steps]
    failed: list[Exception] = []
    for park_json, value_json in parks:
        try:
            _publish(app, loads(park_json), loads(value_json) if value_json else None)
        except Exception as exc:
            failed.append(exc)
    if failed:
        raise ServiceUnavailable(
            f"Could not publish the run's next step; the reconciler sends it again once "
            f"the broker is back: {failed[0]}", instance_id=instance_id,
        ) from failed[0]
    if release.entry:
        runtime(app).store.sent(instance_id, entry=release.entry, message_json="")


def _publish(app: Celery, park: dict[str, Any], value: Any) -> None:
    if park["kind"] == "suspend":
        signature(park["sig"], app=app).apply_async()
        return
    rest = list(park["chain"])
    # What Celery's tracer does after a step returns: the next step gets the result
    # as its first argument and carries the rest of the chain.
    signature(rest.pop(), app=app).apply_async((value,), chain=rest or None)


def start_timer(app: Celery, deadline: float, action: dict[str, Any], *, task_id: str | None = None) -> None:
    """Publish a timer message that performs `action` at `deadline` (epoch seconds).

    An event timeout's timer is kept in its run's steps before the broker has it, as a
    countdown step is (``recovery.keep_published``): a worker holds a countdown message
    unacked until it is due, so one killed leaves it to the broker's visibility timeout;
    the reconciler sends the kept one again a step lease after it was due. Each hop
    keeps its message over the last one, under the same task id (`task_id`, the hop's
    own; a new timer's is derived from its wait step's).
    """
    rt = runtime(app)
    countdown = max(0.0, min(deadline - time.time(), rt.settings.max_countdown))
    kept = action["kind"] == "event_timeout"
    # Only a kept timer keeps its id from hop to hop; any other gets a new one per hop.
    timer_id = (task_id or f"{TIMER_ID_PREFIX}{action['task']}") if kept else None
    timer = app.signature(TIMER_TASK, args=(deadline, action), task_id=timer_id, ignore_result=True)
    if kept:
        _keep_timer(rt, timer, action, wait_s=countdown + rt.settings.step_lease)
    timer.apply_async(countdown=broker_countdown(app, countdown))


def _keep_timer(rt: Runtime, timer: Signature, action: dict[str, Any], *, wait_s: float) -> None:
    try:
        rt.store.keep_published(action["instance"], run_id=action["run"], task_id=timer.id,
                                message_json=dumps(dict(timer)), wait_s=wait_s, replace=True)
    except ServiceUnavailable:
        # The publish goes on: the broker alone holds the timer, as for any other message.
        logger.warning("The store is unreachable; a timer of instance %r is not kept.", action["instance"])


def publish_continued(app: Celery, instance_id: str, name: str, run_id: str, input: Any,
                      delay: float) -> None:
    """Publish the canvas of a continued run (after `delay`) and mark it Running."""
    store = runtime(app).store
    if delay > runtime(app).settings.max_countdown:
        start_timer(app, time.time() + delay, {"kind": "continue", "instance": instance_id,
                                                "name": name, "run": run_id})
    else:
        _apply_continued(app, instance_id, name, run_id, input, countdown=delay)
    store.continued(instance_id, run_id=run_id)


def _apply_continued(app: Celery, instance_id: str, name: str, run_id: str, input: Any,
                     countdown: float = 0) -> None:
    identity = RunIdentity(instance_id, run_id, name)
    try:
        canvas = get_orchestrator(name).build(input)
    except (ValueError, TypeError) as exc:
        store = runtime(app).store
        store.end_run(instance_id, run_id=run_id, status=RuntimeStatus.FAILED,
                      output_json=dumps(f"InvalidInput: {exc}"))
        return
    # Task ids derived from the run id: publishing the same run twice (a redelivered
    # continue step or timer) yields duplicates that the step gates recognise.
    canvas, _ = run_canvas(app, canvas, identity, deterministic=True)
    apply_run(canvas, countdown=broker_countdown(app, countdown) or None, ignore_result=True)


# -- the tasks ------------------------------------------------------------------------
class WaitTask(SingletonTask):
    """The wait step: takes a buffered event at once, or parks the rest of the chain."""

    def wait(self, name: str, timeout: float | None, has_default: bool, default: Any) -> Any:
        """Return a buffered event's data, or park the rest of the chain (Ignore)."""
        identity = RunIdentity.from_request(self.request)
        if identity is None:
            raise NotInRun("wait_for_external_event")
        task_id = self.request.id
        if timeout is not None:
            # Armed before parking: a timer that fires on a finished wait does nothing.
            start_timer(self.app, time.time() + timeout, {
                "kind": "event_timeout", "instance": identity.instance_id,
                "run": identity.run_id, "task": task_id, "event": name, "timeout": timeout,
            })
        park = dumps({"kind": "event", "run": identity.run_id, "chain": self.request.chain or []})
        gate = runtime(self.app).store.park(
            identity.instance_id, run_id=identity.run_id, task_id=task_id, park_json=park, event=name,
            default_json=dumps(default) if has_default else "", final=identity.is_final(task_id),
        )
        if gate.outcome is StepVerdict.EVENT:
            return loads(gate.detail)
        if gate.outcome is StepVerdict.PARKED:
            logger.info("Run %s of %r waits for event %r.", identity.run_id, identity.instance_id, name)
        raise Ignore()


class ContinueTask(SingletonTask):
    """The continue-as-new step: moves the ID to a new run and publishes its canvas."""

    def continue_as_new(self, previous: Any, delay: float, has_input: bool, input: Any) -> None:
        """Move the ID to a new run with the new input and publish that run's canvas."""
        identity = RunIdentity.from_request(self.request)
        if identity is None:
            raise NotInRun("continue_as_new")
        new_input = input if has_input else previous
        try:
            input_json = dumps(new_input)
        except TypeError as exc:
            raise InvalidInput(f"the new input is not JSON-serialisable ({exc})") from exc
        new_run = uuid.uuid4().hex
        store = runtime(self.app).store
        moved = store.continue_as_new(
            identity.instance_id, run_id=identity.run_id, new_run_id=new_run, input_json=input_json,
            task_id=self.request.id, delay_s=delay,
        )
        if not moved:
            raise Ignore()
        try:
            publish_continued(self.app, identity.instance_id, identity.name, new_run, new_input, delay)
        except Exception as exc:
            # The ID stays with the new run (ContinuedAsNew); the retried delivery of this
            # step is recognised by its gate and publishes again.
            raise self.retry(exc=exc, countdown=1, max_retries=None) from exc

    def on_continued(self, identity: RunIdentity, new_run: str, kwargs: dict) -> Any:
        """Publish again the run this step made, after a redelivery (same task ids)."""
        record = runtime(self.app).store.read(identity.instance_id) or {}
        new_input = loads(record["input"]) if "input" in record else None
        publish_continued(self.app, identity.instance_id, identity.name, new_run, new_input,
                          kwargs.get("delay", 0))
        raise Ignore()


def _perform(app: Celery, action: dict[str, Any], *, timer_id: str) -> None:
    store = runtime(app).store
    instance_id = action["instance"]
    if action["kind"] == "event_timeout":
        failure = dumps(f"EventTimeout: no '{action['event']}' event within {action['timeout']} s")
        release = store.event_timeout(
            instance_id, run_id=action["run"], task_id=action["task"], failure_json=failure,
            timer_id=timer_id,
        )
        send_release_ended(app, store, instance_id, release.outcome)
        if release.outcome is Verdict.RELEASE:
            publish_release(app, instance_id, release)
    elif action["kind"] == "continue":
        record = store.read(instance_id) or {}
        if record.get("run") == action["run"]:
            _apply_continued(app, instance_id, action["name"], action["run"], loads(record["input"]))


def register(app: Celery) -> None:
    """Register the wait, continue-as-new and timer tasks on `app`."""

    # Registered through the (lazy) decorator: binding a task reads the app's
    # configuration, which must not happen before the process has set it up.
    @app.task(name=WAIT_TASK, base=WaitTask, bind=True)
    def wait(self: WaitTask, *, name: str, timeout: float | None = None,
             has_default: bool = False, default: Any = None) -> Any:
        return self.wait(name, timeout, has_default, default)

    @app.task(name=CONTINUE_TASK, base=ContinueTask, bind=True)
    def continue_step(self: ContinueTask, previous: Any = None, *, delay: float = 0,
                      has_input: bool = False, input: Any = None) -> None:
        return self.continue_as_new(previous, delay, has_input, input)

    @app.task(name=TIMER_TASK, bind=True, base=Task)
    def timer(self: Task, deadline: float, action: dict[str, Any]) -> None:
        if deadline - time.time() > 0.05:
            start_timer(self.app, deadline, action, task_id=self.request.id)  # one more hop
            return
        # (No request id when the body is called in-process rather than delivered.)
        _perform(self.app, action, timer_id=self.request.id or "")
