"""Ordinary Celery tasks that the example orchestrators chain together."""

import logging
import random
import time
from typing import Any

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
    count = random.randint(0, max_changes)
    logger.info("Found %d changed items", count)
    return list(range(count))


@app.task
def apply_changes(item_ids: list[int], seconds_per_item: float = 0.1) -> int:
    """Apply the changes, one item at a time; a busy day takes longer than the sync interval."""
    for done, _item in enumerate(item_ids, 1):
        time.sleep(seconds_per_item)
        if done % 100 == 0:
            logger.info("Applied %d of %d changes", done, len(item_ids))
    logger.info("Applied all %d changes", len(item_ids))
    return len(item_ids)
