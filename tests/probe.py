"""Probe tasks and orchestrators for tests; workers load them with ``-I tests.probe``.

Each probe step appends what it did to a Redis list of the test's own (``probe:<key>``),
so tests count executions in Redis, across processes, not in memory.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from proj.celery import app
from singleton import UNSET, NotInRun, current_run, orchestrator, wait_for_external_event
from singleton.runs import RunIdentity


def record(key: str, event: str, task_id: str, **extra: Any) -> None:
    entry = {"event": event, "task": task_id, "pid": os.getpid(), "t": time.time(), **extra}
    app.backend.client.rpush(f"probe:{key}", json.dumps(entry))


def events(redis_client: Any, key: str) -> list[dict]:
    return [json.loads(e) for e in redis_client.lrange(f"probe:{key}", 0, -1)]


def run_of(request: Any) -> str | None:
    identity = RunIdentity.from_request(request)
    return None if identity is None else identity.run_id


@app.task(bind=True)
def probe_step(self, seconds: float, key: str) -> str:
    record(key, "start", self.request.id, run=run_of(self.request))
    time.sleep(seconds)
    record(key, "end", self.request.id, run=run_of(self.request))
    return key


@app.task(bind=True, max_retries=3)
def flaky_step(self, key: str) -> str:
    attempt = app.backend.client.incr(f"probe:{key}:attempts")
    record(key, "attempt", self.request.id, attempt=attempt)
    if attempt < 3:
        raise self.retry(countdown=0.1)
    return f"succeeded on attempt {attempt}"


@app.task(bind=True)
def suicide_step(self, key: str) -> None:
    record(key, "start", self.request.id)
    os._exit(1)  # the pool child dies mid-step: WorkerLostError


@app.task(bind=True, time_limit=1)
def overtime_step(self, key: str) -> None:
    record(key, "start", self.request.id)
    time.sleep(10)


@orchestrator
def Probe(input: dict) -> Signature:  # noqa: N802
    """``steps`` probe steps of ``seconds`` each, all recording under ``key``."""
    steps = [probe_step.si(input["seconds"], input["key"]) for _ in range(input.get("steps", 1))]
    return chain(*steps) if len(steps) > 1 else steps[0]


@orchestrator
def Flaky(input: dict) -> Signature:  # noqa: N802
    return flaky_step.si(input["key"])


@orchestrator
def Suicide(input: dict) -> Signature:  # noqa: N802
    return chain(suicide_step.si(input["key"]), probe_step.si(0, input["key"]))


@orchestrator
def Overtime(input: dict) -> Signature:  # noqa: N802
    return chain(overtime_step.si(input["key"]), probe_step.si(0, input["key"]))


@app.task
def greet(city: str) -> str:
    if city == "nowhere":
        raise ValueError("no such city")
    return f"Hello {city}!"


@app.task
def join(greetings: list[str]) -> str:
    return ", ".join(greetings)


@orchestrator
def FanOut(input: list[str]) -> Signature:  # noqa: N802
    """A group inside a chain (a chord): greet every city at once, then join."""
    return chain(group(greet.s(city) for city in input), join.s())


@app.task(bind=True)
def replacer(self, key: str) -> None:
    record(key, "replace", self.request.id)
    raise self.replace(probe_step.si(0, key))


@orchestrator
def Replacing(input: dict) -> Signature:  # noqa: N802
    """A last step that replaces itself with another task (Task.replace)."""
    return chain(probe_step.si(0, input["key"]), replacer.si(input["key"]))


@orchestrator
def GroupAtTheEnd(input: list[str]) -> Signature:  # noqa: N802
    """A canvas whose last element is a group: the output is the group's results."""
    return chain(prepare_cities.si(input), group(greet.si(city) for city in input))


@app.task
def prepare_cities(cities: list[str]) -> list[str]:
    return cities


@app.task(bind=True)
def held_step(self, key: str, timeout: float = 60) -> str:
    """Run until the test pushes to ``probe:<key>:release`` (or `timeout` passes)."""
    record(key, "start", self.request.id, run=run_of(self.request))
    app.backend.client.blpop([f"probe:{key}:release"], timeout=timeout)
    record(key, "end", self.request.id, run=run_of(self.request))
    return key


def release(redis_client: Any, key: str) -> None:
    """Let one held step of `key` finish."""
    redis_client.rpush(f"probe:{key}:release", "go")


RELEASE_ALL_STEPS = 20
RELEASE_ALL_TTL_S = 120


def release_all(redis_client: Any, key: str) -> None:
    """Let every held step of `key` finish, those waiting now and those that start soon.

    For a test's teardown: a run it left live may start its step after the test ended,
    and must not then hold a worker process for the step's whole timeout.
    """
    pipe = redis_client.pipeline()
    pipe.rpush(f"probe:{key}:release", *["go"] * RELEASE_ALL_STEPS)
    pipe.expire(f"probe:{key}:release", RELEASE_ALL_TTL_S)
    pipe.execute()


@orchestrator
def Held(input: dict) -> Signature:  # noqa: N802
    """One step that stays running until the test releases it: a run that outlasts a race."""
    return held_step.si(input["key"])


@app.task(bind=True)
def collect(self, value: Any, key: str) -> Any:
    """Record the value a step received (an event's data, say) and pass it on."""
    record(key, "got", self.request.id, value=value)
    return value


@orchestrator
def WaitTwice(input: dict) -> Signature:  # noqa: N802
    """Wait for two ``Ping`` events in turn, recording each; optionally hold first."""
    key = input["key"]
    first = [held_step.si(key)] if input.get("hold") else []
    return chain(
        *first,
        wait_for_external_event("Ping"), collect.s(key),
        wait_for_external_event("Ping"), collect.s(key),
    )


@orchestrator
def WaitLast(input: Any) -> Signature:  # noqa: N802
    """A run whose only step is the wait: the event's data is the output."""
    return wait_for_external_event("Done")


@orchestrator
def WaitWithTimeout(input: dict) -> Signature:  # noqa: N802
    """Wait for ``Never`` with a timeout (and a default when the input has one)."""
    wait = wait_for_external_event("Never", timeout=input["timeout"], default=input.get("default", UNSET))
    return chain(wait, collect.s(input["key"]))


@orchestrator
def HeldThenStep(input: dict) -> Signature:  # noqa: N802
    """A held first step, then a probe step: for suspending between two steps."""
    return chain(held_step.si(input["key"]), probe_step.si(0, input["key"]))


@orchestrator(if_live="use_existing")
def HeldOrExisting(input: dict) -> Signature:  # noqa: N802
    """Like Held, with ``use_existing`` as the orchestrator's default live policy."""
    return held_step.si(input["key"])


@orchestrator(lease=1)
def Unconsumed(input: dict) -> Signature:  # noqa: N802
    """A run whose only message goes to a queue no worker reads: its messages are 'gone'."""
    return probe_step.si(0, input["key"]).set(queue="nobody-reads-this")


@orchestrator(lease=1)
def LongerThanLease(input: dict) -> Signature:  # noqa: N802
    """One step that runs three times its run's lease, kept alive by its heartbeat."""
    return probe_step.si(3, input["key"])


@orchestrator(timeout=1)
def Overdue(input: dict) -> Signature:  # noqa: N802
    """A run whose held first step outlasts its timeout, then a second step."""
    return chain(held_step.si(input["key"]), probe_step.si(0, input["key"]))


# -- operations (issue 5) -------------------------------------------------------
@app.task(bind=True)
def run_step(self, seconds: float, key: str, index: int) -> str:
    """Record start and end with the step's run ID, so tests can tell runs apart."""
    run = run_of(self.request)
    record(key, "start", self.request.id, run=run, index=index)
    time.sleep(seconds)
    record(key, "end", self.request.id, run=run, index=index)
    return key


@orchestrator
def Timed(input: dict) -> Signature:  # noqa: N802
    """``steps`` steps of ``seconds`` each, recording their run under ``key``."""
    steps = [run_step.si(input["seconds"], input["key"], i) for i in range(input.get("steps", 1))]
    return chain(*steps) if len(steps) > 1 else steps[0]


# -- chord callbacks and nested groups: every task of the canvas is a fenced step --------
def current_run_id() -> str | None:
    """The run ``current_run()`` names in this task, or None outside a step's user code."""
    try:
        return current_run().run_id
    except NotInRun:
        return None


@app.task(bind=True)
def seen(self, *parents: Any, key: str, name: str) -> str:
    """Record the stamp's run and ``current_run()``'s; a chord callback gets its parts first."""
    record(key, "seen", self.request.id, name=name, run=run_of(self.request), current=current_run_id())
    return name


def _seen(key: str, name: str, *, callback: bool = False) -> Signature:
    # A chord's callback takes its header's results; every other task is immutable.
    return seen.s(key=key, name=name) if callback else seen.si(key=key, name=name)


# Every task of each of nested_canvas's shapes, by the name it records.
NESTED_SHAPES = {
    "group-then-task": {"member-a", "member-b", "join"},
    "chord-in-chain": {"first", "member-a", "member-b", "callback", "last"},
    "group-in-group": {"member-a", "member-b", "outer"},
    "chord-in-group": {"member-a", "member-b", "callback", "outer"},
}


def nested_canvas(key: str, shape: str) -> Signature:
    """A canvas of `seen` tasks, each named by its place: the shapes Celery turns into chords."""
    members = [_seen(key, "member-a"), _seen(key, "member-b")]
    shapes = {
        # A group followed by a task: Celery makes the task the callback of a chord.
        "group-then-task": lambda: chain(group(members), _seen(key, "join", callback=True)),
        "chord-in-chain": lambda: chain(
            _seen(key, "first"), chord(members, _seen(key, "callback", callback=True)), _seen(key, "last")
        ),
        "group-in-group": lambda: group(group(members), _seen(key, "outer")),
        "chord-in-group": lambda: group(chord(members, _seen(key, "callback", callback=True)),
                                        _seen(key, "outer")),
    }
    return shapes[shape]()


@orchestrator
def Nested(input: dict) -> Signature:  # noqa: N802
    """One of ``nested_canvas``'s shapes, recording under ``key``."""
    return nested_canvas(input["key"], input["shape"])


@orchestrator
def HeldFanOut(input: dict) -> Signature:  # noqa: N802
    """Two held group members, then a callback (a chord): to end the run while they run."""
    key = input["key"]
    return chain(group(held_step.si(key), held_step.si(key)), _seen(key, "callback", callback=True))
