"""The example orchestrators (Durable Functions' first samples, as Celery canvases)."""

from typing import Any

from celery import chain
from celery.canvas import Signature

from singleton import orchestrator

from .tasks import apply_changes, explode, fetch_changes, prepare, say_hello, wait

MAX_DELAY_SECONDS = 3600


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
