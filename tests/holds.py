"""Hold points, tasks and orchestrators for the durability tests.

Workers load this module with ``-I tests.probe,tests.holds``. A hold point stops a
worker process at one moment of the singleton layer's own work (a continue-as-new
step about to run, a timer just published, a timer about to run) until the test
releases it: the interleavings the durability tests need, without sleeps. A test arms
a point for one instance (``arm``); the worker records ``held:<point>`` under the
instance's probe key (``tests.probe.events``), waits for ``release_point``, and records
``released:<point>``. An armed point holds once.
"""

from __future__ import annotations

from typing import Any

from celery import chain, group
from celery.canvas import Signature
from celery.signals import after_task_publish, task_prerun

from proj.celery import app
from singleton import continue_as_new, current_run, orchestrator, step_finished, step_started
from singleton.durable import CONTINUE_TASK, TIMER_TASK
from tests.probe import held_step, probe_step, record

HOLD_TIMEOUT_S = 60


def _armed_key(instance_id: str, point: str) -> str:
    return f"probe:hold:{instance_id}:{point}"


def _release_key(instance_id: str, point: str) -> str:
    return f"probe:{instance_id}:{point}:release"


def arm(redis_client: Any, instance_id: str, point: str) -> None:
    """Make the next pass of `instance_id` through `point` wait for ``release_point``."""
    redis_client.set(_armed_key(instance_id, point), "1", ex=2 * HOLD_TIMEOUT_S)


def release_point(redis_client: Any, instance_id: str, point: str) -> None:
    """Let the process held at `point` go on."""
    redis_client.rpush(_release_key(instance_id, point), "go")


def _hold(instance_id: str, point: str, task_id: str) -> None:
    client = app.backend.client
    if not client.delete(_armed_key(instance_id, point)):
        return
    record(instance_id, f"held:{point}", task_id)
    client.blpop([_release_key(instance_id, point)], timeout=HOLD_TIMEOUT_S)
    record(instance_id, f"released:{point}", task_id)


def _timer_instance(args: Any) -> str | None:
    # A timer's arguments are (deadline, action); the action names its instance.
    try:
        return args[1]["instance"]
    except (IndexError, KeyError, TypeError):
        return None


def _on_step_started(sender: Any = None, instance_id: str = "", task_id: str = "", **_: Any) -> None:
    if sender is not None and sender.name == CONTINUE_TASK:
        _hold(instance_id, "continue", task_id)


def _on_step_finished(sender: Any = None, instance_id: str = "", task_id: str = "", **_: Any) -> None:
    if sender is not None and sender.name == CONTINUE_TASK:
        record(instance_id, "finished:continue", task_id)


def _on_published(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
    if sender == TIMER_TASK and isinstance(body, list | tuple) and body:
        instance_id = _timer_instance(body[0])
        if instance_id:
            _hold(instance_id, "timer-published", (headers or {}).get("id", ""))


def _on_prerun(sender: Any = None, task_id: str = "", args: Any = None, **_: Any) -> None:
    if sender is not None and sender.name == TIMER_TASK:
        instance_id = _timer_instance(args)
        if instance_id:
            _hold(instance_id, "timer-run", task_id)


step_started.connect(_on_step_started, weak=False)
step_finished.connect(_on_step_finished, weak=False)
after_task_publish.connect(_on_published, weak=False)
task_prerun.connect(_on_prerun, weak=False)


@app.task(bind=True, max_retries=1)
def retry_once(self, key: str) -> str:
    """Fail the first attempt with ``self.retry()``; succeed the second (one retry allowed)."""
    attempt = app.backend.client.incr(f"probe:{key}:attempts")
    record(key, "attempt", self.request.id, attempt=attempt, retries=self.request.retries)
    if attempt == 1:
        raise self.retry(countdown=0.1)
    return f"succeeded on attempt {attempt}"


@orchestrator
def RetryOnce(input: dict) -> Signature:  # noqa: N802
    """One step that calls ``self.retry()`` once, within its budget of one retry."""
    return retry_once.si(input["key"])


@orchestrator(lease=3)
def QuickShortLease(input: dict) -> Signature:  # noqa: N802
    """One instant step, in a run whose lease (3 s) is shorter than a drain it may wait for."""
    return probe_step.si(0, input["key"])


@orchestrator
def HeldThenGroup(input: dict) -> Signature:  # noqa: N802
    """A held step, then a group of ``members`` instant steps (a chord with the completion)."""
    key = input["key"]
    return chain(held_step.si(key), group(probe_step.si(0, key) for _ in range(input.get("members", 3))))


@orchestrator
def ContinueOnce(input: dict) -> Signature:  # noqa: N802
    """A step, then continue-as-new once: the second run is one step and ends."""
    key = input["key"]
    if input.get("again"):
        return chain(probe_step.si(0, key), continue_as_new({"key": key}))
    return probe_step.si(0, key)


# -- fencing an external write with the run's fence -----------------------------------
# A toy external store: it keeps the highest fence it has seen per key and refuses a
# write that carries a lower one (what a database row's "fence" column would do).
LEDGER_WRITE = """
local seen = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) < seen then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
return 1
"""


def ledger_write(client: Any, key: str, *, fence: int, value: str) -> bool:
    """Write `value` to the ledger entry `key` unless a higher fence wrote it already."""
    return bool(client.eval(LEDGER_WRITE, 1, f"probe:ledger:{key}", fence, value))


@app.task(bind=True)
def fenced_write(self, key: str, value: str) -> bool:
    """Write `value` to the ledger under the run's fence; record what current_run() said."""
    run = current_run()
    record(key, "fenced", self.request.id, fence=run.fence, run=run.run_id,
           instance=run.instance_id, orchestrator=run.orchestrator)
    return ledger_write(app.backend.client, key, fence=run.fence, value=value)


@orchestrator
def FencedWrite(input: dict) -> Signature:  # noqa: N802
    """One step that writes ``value`` to the ledger entry ``key`` under the run's fence."""
    return fenced_write.si(input["key"], input["value"])
