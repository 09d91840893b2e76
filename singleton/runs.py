"""Run identity: how every task of a run knows which instance and run it belongs to."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any
from uuid import UUID, uuid5

from celery import Celery
from celery.canvas import Signature, chain, group, maybe_signature, signature
from celery.utils import uuid
from kombu.utils.json import dumps

from .errors import NotInRun

# The one stamp every task of a run carries: its identity in a compact form (see
# RunIdentity.stamp_value). The names below label runs for monitors (Flower's kwargs).
STAMP = "singleton"
STAMP_INSTANCE = "singleton_instance"
STAMP_RUN = "singleton_run"
STAMP_NAME = "singleton_orchestrator"
# Messages published before the compact stamp carried these four.
_OLD_STAMPS = (STAMP_INSTANCE, STAMP_RUN, STAMP_NAME, "singleton_final")
COMPLETE_TASK = "singleton.complete"
# A task class with this attribute true stamps the next step of its chain as its gate
# lets it run or hands its stored result on (SingletonTask does).
HANDS_ON = "singleton_hands_on"
# The stamp's first character: does the run end with the last step of a plain chain
# (whose success completes it) or with an appended completion task?
_ENDS_WITH_LAST_STEP, _ENDS_WITH_COMPLETION = "p", "c"


@dataclass(frozen=True)
class RunIdentity:
    """The instance ID, run ID and orchestrator of one run, and its final step's task id.

    ``final`` is the id of the task whose result is the run's output; empty when the
    canvas ends in a group, whose run then ends with an appended completion task.
    ``plain`` says which of the two: the tasks carry that, not the final step's id,
    and a step knows it is the final one when nothing of its chain is left to run.
    """

    instance_id: str
    run_id: str
    name: str
    final: str = ""
    plain: bool = True

    @classmethod
    def from_request(cls, request: Any) -> RunIdentity | None:
        """Read the identity from a task request's stamps; None if it carries none."""
        identity = cls.from_stamps(getattr(request, "stamps", None) or {})
        if identity is None or not identity.plain:
            return identity
        # The last step of a plain chain (or of what replaced it) has no chain left;
        # a group's members, which replacing a step with a group makes, are not final.
        last = not (getattr(request, "chain", None) or getattr(request, "group", None)
                    or getattr(request, "chord", None))
        return replace(identity, final=(getattr(request, "id", None) or "") if last else "")

    @classmethod
    def from_stamps(cls, stamps: Mapping[str, Any]) -> RunIdentity | None:
        """Read the identity (without ``final``) from a message's stamps; None if it has none."""
        value = _single(stamps.get(STAMP))
        if isinstance(value, str) and value:
            return cls.from_stamp_value(value)
        instance_id, run_id, name, final = (_single(stamps.get(k)) for k in _OLD_STAMPS)
        if not (instance_id and run_id):
            return None
        return cls(instance_id, run_id, name or "", final or "", plain=bool(final))

    @classmethod
    def from_stamp_value(cls, value: str) -> RunIdentity | None:
        """Parse ``stamp_value()``'s form; None if `value` is not one."""
        try:
            kind, rest = value[0], value[1:]
            length, rest = rest.split(":", 1)
            run_id, rest = rest[: int(length)], rest[int(length):]
            length, rest = rest.split(":", 1)
            name, instance_id = rest[: int(length)], rest[int(length):]
        except (IndexError, ValueError):
            return None
        if kind not in (_ENDS_WITH_LAST_STEP, _ENDS_WITH_COMPLETION) or not (run_id and instance_id):
            return None
        return cls(instance_id, run_id, name, plain=kind == _ENDS_WITH_LAST_STEP)

    def stamp_value(self) -> str:
        """Return the identity as the run's one stamp: ``<p|c><len>:<run id><len>:<name><instance ID>``.

        Lengths, not separators, delimit the parts, so an instance ID or name may hold
        any character; the form costs a few bytes over the three values themselves.
        """
        kind = _ENDS_WITH_LAST_STEP if self.plain else _ENDS_WITH_COMPLETION
        return f"{kind}{len(self.run_id)}:{self.run_id}{len(self.name)}:{self.name}{self.instance_id}"

    def stamps(self) -> dict[str, str]:
        """Return the stamps that mark a task as a step of this run."""
        return {STAMP: self.stamp_value()}

    def is_final(self, task_id: str) -> bool:
        """Return True if `task_id` is the step whose result is the run's output."""
        return bool(self.final) and task_id == self.final


@dataclass(frozen=True)
class CurrentRun:
    """The run a step executes in, as ``current_run()`` tells user code.

    ``fence`` is the run's fencing number: it grows with every run of the instance
    ID, so an external system that keeps the highest fence it has seen per ID can
    refuse a write from a step of an older run (see the README, "Fencing tokens").
    """

    instance_id: str
    run_id: str
    fence: int
    orchestrator: str


_CURRENT: ContextVar[CurrentRun | None] = ContextVar("singleton_current_run", default=None)


def current_run() -> CurrentRun:
    """Return the run of the step executing now (instance, run ID, fence, orchestrator).

    Raises:
        NotInRun: called outside the user code of a step of an orchestration run.
    """
    run = _CURRENT.get()
    if run is None:
        raise NotInRun("current_run")
    return run


@contextmanager
def running_in(run: CurrentRun) -> Iterator[None]:
    """Make `run` what ``current_run()`` answers while the block runs (the worker's use)."""
    token = _CURRENT.set(run)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _single(value: Any) -> Any:
    # Celery may hand a stamp back as a one-element list.
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def run_canvas(
    app: Celery, canvas: Signature, identity: RunIdentity, *, deterministic: bool = False
) -> tuple[Signature, RunIdentity]:
    """Wrap an orchestrator's canvas for one run: pick its final step and stamp its tasks.

    A single task or a chain of single tasks gets a preset id on its last task: that
    step's success completes the run, with no extra task. Only its first task is
    stamped: each step's worker stamps the next (``hand_on``) before Celery publishes
    it. Any other canvas (a group or chord anywhere in it) gets a completion task
    appended instead, since Celery may give the tasks it builds at publish time new
    ids, and every one of its tasks is stamped here. Failures need no errback: the
    worker's ``task_failure`` handler fails the run of any stamped task.

    With ``deterministic``, a plain canvas's task ids derive from the run id, so a
    second publish of the same run makes duplicates that the step gates recognise.

    Returns:
        The canvas to publish, and the identity (with ``final``) its tasks carry.
    """
    if not isinstance(canvas, Signature):
        raise TypeError(f"an orchestrator must return a Celery signature, not {canvas!r}")
    steps = _plain_steps(canvas)
    if steps is None:
        canvas = chain(canvas, app.signature(COMPLETE_TASK), app=app)
        identity = replace(identity, final="", plain=False)
        stamps = identity.stamps()
        for task in _tasks(canvas):
            _stamp(task, stamps)
        return canvas, identity
    if deterministic:
        namespace = UUID(hex=identity.run_id)
        for n, step in enumerate(steps):
            step.options["task_id"] = str(uuid5(namespace, str(n)))
    final = steps[-1].options.setdefault("task_id", uuid())
    identity = replace(identity, final=final, plain=True)
    _stamp(steps[0], identity.stamps())
    for before, step in pairwise(steps):
        # Each step's worker stamps the next one as its gate lets it go (hand_on), so the
        # first message carries one stamp; a step whose task may not do that (not known
        # here as a singleton task) leaves its successor stamped in the message.
        if not _hands_on(app, before):
            hand_on(step, identity)
    return canvas, identity


def hand_on(step: dict[str, Any], identity: RunIdentity) -> None:
    """Mark `step`, the next step of a plain chain (a signature or its dict), as a step of the run.

    Unless it carries a run's stamp already: a replacement's tasks, or a message from
    before the first message carried one stamp. Its result is not stored either (the
    run's record keeps what status queries need): it skips Celery's result write (SETEX
    and PUBLISH), unless the orchestrator asked for it on that step. A group or chord
    (a replacement may put one in the chain) is no plain chain's step and is left as it
    is: a chord's header must store its results.
    """
    if step.get("subtask_type"):
        return
    options = step.setdefault("options", {})
    if STAMP not in options and STAMP_RUN not in options:
        _stamp_options(options, identity.stamps())
    options.setdefault("ignore_result", True)


def _hands_on(app: Celery, step: Signature) -> bool:
    # SingletonTask says so with this attribute (the worker module imports this one).
    return bool(getattr(app.tasks.get(step.task), HANDS_ON, False))


def broker_countdown(app: Celery, countdown: float) -> float:
    """Return `countdown` as the broker can hold it.

    RabbitMQ's native delayed delivery (quorum queues) counts whole seconds and
    refuses less than one (kombu's calculate_routing_key truncates, then raises):
    round up, so that a hop never fires early nor fails.
    """
    if countdown > 0 and app.conf.task_default_queue_type == "quorum":
        return float(math.ceil(countdown))
    return countdown


def apply_run(canvas: Signature, **options: Any) -> None:
    """Publish a run's canvas (from ``run_canvas``) with `options` for its first task."""
    publish_message(canvas.app, run_message(canvas), **options)


def run_message(canvas: Signature) -> dict[str, Any]:
    """Return what publishing a run's canvas (from ``run_canvas``) sends, with every task id set.

    A plain chain is published the way Celery's ``chain.apply_async`` publishes it (the
    first task, with the rest as its ``chain`` field, last step first), without the
    deep copies and result objects Celery builds on the way, which the run never uses.
    Any other canvas is frozen first, so its task ids are fixed before it is kept.
    The message is JSON-serialisable (kombu's json): the outbox keeps it, and a second
    publish of it makes duplicates that the step gates recognise.
    """
    steps = _plain_steps(canvas)
    if steps is None or (canvas.subtask_type == "chain" and canvas.options):
        canvas.freeze()
        return {"canvas": canvas}
    for step in steps:
        # The first task's id too: a second publish must repeat every id.
        step.options.setdefault("task_id", uuid())
    first, rest = steps[0], steps[1:]
    return {"first": first, "chain": [dict(step) for step in reversed(rest)]}


def encode_message(message: dict[str, Any]) -> str:
    """Return a message from ``run_message`` as JSON that kombu's json ``loads`` reads back.

    The standard library's C encoder when the message is plain JSON (the usual case,
    about twice as fast), else kombu's json, which also encodes dates, UUIDs and decimals.
    """
    try:
        return json.dumps(message, separators=(",", ":"))
    except TypeError:
        return dumps(message)


def publish_message(app: Celery, message: dict[str, Any], **options: Any) -> None:
    """Publish a message from ``run_message`` (or its JSON form, decoded) with `options`."""
    if "canvas" in message:
        _signature(app, message["canvas"]).apply_async(**options)
        return
    first = _signature(app, message["first"])
    first.apply_async(chain=message["chain"] or None, **options)


def _signature(app: Celery, value: dict[str, Any]) -> Signature:
    # A decoded message holds dicts; a fresh one the signatures themselves (not copied).
    return value if isinstance(value, Signature) else signature(value, app=app)


def _stamp(task: Signature, stamps: dict[str, str]) -> None:
    _stamp_options(task.options, stamps)


def _stamp_options(options: dict[str, Any], stamps: dict[str, str]) -> None:
    # What Signature.stamp() writes for plain headers, without its visitor walk.
    stamped = [*options.get("stamped_headers", ()), *stamps]
    options.update(stamps, stamped_headers=list(dict.fromkeys(stamped)))


def _tasks(canvas: Signature) -> Iterator[Signature]:
    """Yield every single task of `canvas`: chain and group members, chord headers and bodies.

    Signature.stamp() without a visitor skips a chord's body (only its visitor walk
    reaches it), and Celery folds what follows a chord into that body, so a run's
    canvas is walked here. Links are tasks the run publishes too. Members and links
    become lists of signatures in place (a group's lazy members too: the canvas is
    frozen before it is published anyway), so that what is stamped is what is sent.
    """
    for link in _links(canvas):
        yield from _tasks(link)
    if canvas.subtask_type is None:
        yield canvas
        return
    for member in _members(canvas):
        yield from _tasks(member)


def _links(canvas: Signature) -> list[Signature]:
    # Its callbacks and errbacks, as signatures in place.
    links = []
    for option in ("link", "link_error"):
        if canvas.options.get(option):
            canvas.options[option] = _signatures(canvas.options[option], app=canvas._app)
            links.extend(canvas.options[option])
    return links


def _members(canvas: Signature) -> list[Signature]:
    # A chain's or a group's tasks, or a chord's header tasks and body, as signatures in place.
    holder = canvas.tasks if isinstance(canvas.tasks, group) else canvas
    field = "header" if holder.subtask_type == "chord" else "tasks"
    holder.kwargs[field] = _signatures(holder.kwargs[field], app=canvas._app)
    members = list(holder.kwargs[field])
    if canvas.subtask_type == "chord" and canvas.kwargs.get("body") is not None:
        canvas.kwargs["body"] = maybe_signature(canvas.kwargs["body"], app=canvas._app)
        members.append(canvas.kwargs["body"])
    return members


def _signatures(value: Any, *, app: Celery | None) -> list[Signature]:
    # One signature or a sequence of them (dicts, once decoded), as a list of signatures.
    values = [value] if isinstance(value, dict) else list(value)
    return [maybe_signature(v, app=app) for v in values]


def _plain_steps(canvas: Signature) -> list[Signature] | None:
    # subtask_type is None for a single task, "chain"/"group"/"chord" otherwise.
    if canvas.subtask_type is None:
        return [canvas]
    if canvas.subtask_type == "chain" and all(t.subtask_type is None for t in canvas.tasks):
        return list(canvas.tasks)
    return None
