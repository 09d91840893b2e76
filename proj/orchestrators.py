"""The example orchestrators (Durable Functions' first samples, as Celery canvases)."""

from typing import Any

from celery import chain
from celery.canvas import Signature

from singleton import orchestrator

from .tasks import explode, prepare, say_hello, wait

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
