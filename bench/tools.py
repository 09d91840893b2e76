"""The tools compared: plain Celery, this project's start_new, celery-singleton, celery-once.

Each tool is a way to start one 3-step run under a key, the exception it raises
when it refuses a start, and the broker queue its runs land in (one message per
run: a chain travels inside its first task's message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, chain

from .peer_app import PEER_QUEUE, peer_start

PLAIN = "plain chain"
PLAIN_NO_RESULT = "plain, ignore_result"
OURS = "start_new"
SINGLETON = "celery-singleton"
ONCE = "celery-once"


@dataclass(frozen=True)
class Tool:
    """One way to start a run.

    Attributes:
        name: the label in tables and plots.
        start: starts one run under the given key (plain Celery ignores the key).
        refused: the exceptions that mean "a run already holds this key".
        broker: a client on the database of the tool's broker.
        queue: the broker list its runs are published to.
    """

    name: str
    start: Callable[[str], Any]
    refused: tuple[type[BaseException], ...]
    broker: redis.Redis
    queue: str = "celery"

    def queued(self) -> int:
        """Return how many messages wait in the tool's queue."""
        return int(self.broker.llen(self.queue))

    def purge(self) -> None:
        """Drop every message waiting in the tool's queue."""
        self.broker.delete(self.queue)


def build_tools(app: Celery, peer_app: Celery) -> dict[str, Tool]:
    """Return the compared tools, by name, for the product app and the peers' app."""
    from celery_once import AlreadyQueued
    from celery_singleton.exceptions import DuplicateTaskError

    from proj.tasks import say_hello
    from singleton import InstanceAlreadyExists, OrchestrationClient

    client = OrchestrationClient(app)
    ours_broker = redis.Redis.from_url(app.conf.broker_url)
    peer_broker = redis.Redis.from_url(peer_app.conf.broker_url)

    def hello_chain() -> Any:
        return chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London"))

    def plain(_key: str) -> Any:
        return hello_chain().apply_async()

    def plain_no_result(_key: str) -> Any:
        return hello_chain().apply_async(ignore_result=True)

    def ours(key: str) -> str:
        return client.start_new("HelloSequence", instance_id=key)

    return {
        PLAIN: Tool(PLAIN, plain, (), ours_broker),
        PLAIN_NO_RESULT: Tool(PLAIN_NO_RESULT, plain_no_result, (), ours_broker),
        OURS: Tool(OURS, ours, (InstanceAlreadyExists,), ours_broker),
        SINGLETON: Tool(SINGLETON, peer_start(peer_app, "singleton"), (DuplicateTaskError,),
                        peer_broker, PEER_QUEUE),
        ONCE: Tool(ONCE, peer_start(peer_app, "once"), (AlreadyQueued,), peer_broker, PEER_QUEUE),
    }
