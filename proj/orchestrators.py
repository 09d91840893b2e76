"""The example orchestrators (Durable Functions' first samples, as Celery canvases)."""

from typing import Any

from celery import chain, chord
from celery.canvas import Signature

from singleton import UNSET, continue_as_new, orchestrator, wait_for_external_event

from .tasks import (
    apply_changes,
    approved,
    count,
    explode,
    fetch_changes,
    part,
    prepare,
    say_hello,
    total,
    wait,
)

MAX_DELAY_SECONDS = 3600
FAN_OUT_MAX_SECONDS = 60


@orchestrator
def HelloSequence(_input: Any) -> Signature:  # noqa: N802 - Durable Functions' name
    """Greet three cities in turn; the output lists the three greetings."""
    return chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London"))


@orchestrator
def Delay(input: Any) -> Signature:  # noqa: N802
    """Wait ``input["seconds"]`` (0-3600) in one step, then output ``input["value"]``."""
    if not isinstance(input, dict) or "seconds" not in input:
        raise ValueError('Delay expects {"seconds": <0-3600>, "value": <any>}')
    seconds = input["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds must be a number")
    if not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_DELAY_SECONDS}")
    return wait.si(seconds, input.get("value"))


@orchestrator
def AlwaysFails(input: Any) -> Signature:  # noqa: N802
    """Run one good step, then one that raises ValueError("boom")."""
    return chain(prepare.si(input), explode.s())


@orchestrator
def SyncInventory(input: Any) -> Signature:  # noqa: N802
    """Fetch the changed inventory items, then apply them (0.1 s each; the beat example).

    ``input["max_changes"]`` (0-10000, default 400) bounds one sync's changes, so a run
    takes up to 40 s by default: sometimes longer than its 30 s beat interval.
    """
    max_changes = (input or {}).get("max_changes", 400) if isinstance(input, dict | None) else None
    if isinstance(max_changes, bool) or not isinstance(max_changes, int) or not 0 <= max_changes <= 10000:
        raise ValueError('SyncInventory expects {"max_changes": <0-10000>}')
    return chain(fetch_changes.si(max_changes), apply_changes.s())


@orchestrator
def ApprovalWorkflow(input: Any) -> Signature:  # noqa: N802
    """Wait for an ``Approval`` event; output ``{"approved": <event data>}``.

    Optional input ``{"timeout": <seconds>, "default": <value>}``: after the timeout
    the run continues with the default, or fails (EventTimeout) when none is given.
    """
    options = {} if input is None else input
    if not isinstance(options, dict) or set(options) - {"timeout", "default"}:
        raise ValueError('ApprovalWorkflow expects null or {"timeout": <seconds>, "default": <any>}')
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= MAX_DELAY_SECONDS):
        raise ValueError(f"timeout must be a number of seconds in (0, {MAX_DELAY_SECONDS}]")
    default = options.get("default", UNSET)
    return chain(wait_for_external_event("Approval", timeout=timeout, default=default), approved.s())


@orchestrator
def Counter(input: Any) -> Signature:  # noqa: N802
    """An eternal orchestration: count up every ``interval`` seconds until terminated.

    Input ``{"count": n, "interval": s}``. Each cycle sets the custom status to
    ``{"count": n}``, then continues as new with ``count + 1`` after ``s`` seconds.
    """
    if not isinstance(input, dict) or not isinstance(input.get("count"), int):
        raise ValueError('Counter expects {"count": <integer>, "interval": <seconds>}')
    interval = input.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ValueError("interval must be a number of seconds")
    if not 0 <= interval <= MAX_DELAY_SECONDS:
        raise ValueError(f"interval must be between 0 and {MAX_DELAY_SECONDS}")
    return chain(count.si(input["count"], interval), continue_as_new(delay=interval))


@orchestrator
def FanOutFanIn(input: Any) -> Signature:  # noqa: N802
    """Fan out, fan in: three parts at once (a group), then their sum (the chord's callback).

    Optional input ``{"seconds": s}`` (0-60, default 0.2): how long each part takes.
    Part ``n`` returns ``n * n``, so the output is 0 + 1 + 4 = 5.
    """
    seconds = (input or {}).get("seconds", 0.2) if isinstance(input, dict | None) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
            or not 0 <= seconds <= FAN_OUT_MAX_SECONDS:
        raise ValueError(f'FanOutFanIn expects null or {{"seconds": <0-{FAN_OUT_MAX_SECONDS}>}}')
    return chord([part.si(n, seconds) for n in range(3)], total.s())
