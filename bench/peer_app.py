"""A small Celery app for the peer lock libraries, kept apart from the product.

celery-singleton and celery-once lock one task (a hash of its arguments), so each
peer gets a 3-step chain of the same shape as HelloSequence whose *first* task
carries the lock: ``<peer>_hello(key, "Tokyo") | hello("Seattle") | hello("London")``.
The app uses its own Redis database, so its queue and locks never mix with the
product's, and it takes the product's Celery settings (JSON, acks_late, ...) so that
publishing costs the same.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

PEER_QUEUE = "celery"


def create_peer_app(redis_url: str) -> Celery:
    """Return a Celery app on `redis_url` with one locked first step per peer library.

    Args:
        redis_url: a redis:// URL with its own database number (the app's broker,
            result backend and both libraries' locks).
    """
    from celery_once import QueueOnce
    from celery_singleton import Singleton

    app = Celery("bench-peers", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        # celery-singleton reads singleton_* settings too: the product's
        # singleton_key_prefix would otherwise become its lock prefix.
        singleton_key_prefix="SINGLETONLOCK_",
        singleton_backend_url=redis_url,
        # A refused start raises, as the other tools' refusals do, instead of
        # returning the running task's AsyncResult.
        singleton_raise_on_duplicate=True,
        ONCE={
            "backend": "celery_once.backends.Redis",
            "settings": {"url": redis_url, "default_timeout": 3600},
        },
    )

    @app.task(name="bench.hello")
    def hello(greetings: list[str], city: str) -> list[str]:
        return [*greetings, f"Hello {city}!"]

    @app.task(name="bench.singleton_hello", base=Singleton)
    def singleton_hello(key: str, city: str) -> list[str]:
        return [f"Hello {city}!"]

    @app.task(name="bench.once_hello", base=QueueOnce, once={"graceful": False})
    def once_hello(key: str, city: str) -> list[str]:
        return [f"Hello {city}!"]

    return app


def peer_chain(app: Celery, peer: str, key: str) -> Signature:
    """Return the 3-step chain whose first step takes `peer`'s lock on `key`."""
    first = app.tasks[f"bench.{peer}_hello"]
    hello = app.tasks["bench.hello"]
    return chain(first.s(key, "Tokyo"), hello.s("Seattle"), hello.s("London"))


def peer_start(app: Celery, peer: str) -> Any:
    """Return a function that starts `peer`'s chain under a key: ``start(key)``."""

    def start(key: str) -> Any:
        return peer_chain(app, peer, key).apply_async()

    return start
