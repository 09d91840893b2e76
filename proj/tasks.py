"""Ordinary Celery tasks that the example orchestrators chain together."""

import logging
import random
import time
from typing import Any

from singleton import set_custom_status

from .celery import app

logger = logging.getLogger(__name__)


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
def fetch_changes(max_changes: int) -> list[int]:
    """Return the ids of the inventory items changed since the last sync (0 to max_changes)."""
    changed = random.randint(0, max_changes)
    logger.info("Found %d changed items", changed)
    return list(range(changed))


@app.task
def apply_changes(item_ids: list[int], seconds_per_item: float = 0.1) -> int:
    """Apply the changes, one item at a time; a busy day takes longer than the sync interval."""
    for done, _item in enumerate(item_ids, 1):
        time.sleep(seconds_per_item)
        if done % 100 == 0:
            logger.info("Applied %d of %d changes", done, len(item_ids))
    logger.info("Applied all %d changes", len(item_ids))
    return len(item_ids)


@app.task
def approved(decision: Any) -> dict[str, Any]:
    """Wrap the approval event's data as the workflow's output."""
    return {"approved": decision}


@app.task
def count(n: int, interval: float) -> dict[str, Any]:
    """Publish ``{"count": n}`` as the custom status; return the next cycle's input."""
    set_custom_status({"count": n})
    return {"count": n + 1, "interval": interval}


@app.task
def part(n: int, seconds: float) -> int:
    """Take `seconds`, then return ``n * n``: one member of a fan-out."""
    time.sleep(seconds)
    return n * n


@app.task
def total(parts: list[int]) -> int:
    """Add up the fan-out's results: the fan-in."""
    return sum(parts)
