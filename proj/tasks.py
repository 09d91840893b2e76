"""Ordinary Celery tasks that the example orchestrators chain together."""

import time
from typing import Any

from singleton import set_custom_status

from .celery import app


@app.task
def say_hello(greetings: list[str], city: str) -> list[str]:
    """Append a greeting for `city` to the greetings so far."""
    return [*greetings, f"Hello {city}!"]


@app.task
def wait(seconds: float, value: Any) -> Any:
    """Wait `seconds`, then return `value` (the example of a long step)."""
    time.sleep(seconds)
    return value


@app.task
def prepare(value: Any) -> Any:
    """Return `value` unchanged: a first step that succeeds."""
    return value


@app.task
def explode(_previous: Any) -> None:
    """Fail the way a buggy step does."""
    raise ValueError("boom")


@app.task
def approved(decision: Any) -> dict[str, Any]:
    """Wrap the approval event's data as the workflow's output."""
    return {"approved": decision}


@app.task
def count(n: int, interval: float) -> dict[str, Any]:
    """Publish ``{"count": n}`` as the custom status; return the next cycle's input."""
    set_custom_status({"count": n})
    return {"count": n + 1, "interval": interval}
