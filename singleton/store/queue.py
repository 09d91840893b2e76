"""The Redis broker's queues as a claim reaches them: a publish kept instead of sent.

Where the broker is the record store's own Redis database, the claim script itself
pushes a run's first message onto its queue (and publishes its task-sent event): a
start then costs one round trip, and the message exists exactly when the claim does.
The message is the one kombu would send. Celery publishes it through a kombu channel
of the broker (``RecordingChannel``) whose two sending methods keep each command's
key and payload, built by kombu's own code, instead of sending them; declarations
still reach Redis as usual. Anything the channel could not keep as one command
(a queue with an expiry, a batched publish) raises ``Unrecordable`` before any of
it is kept, and the caller publishes through kombu instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu import Producer
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

# The connection settings that together name one database of one server.
_SAME_DATABASE = ("host", "port", "path", "db")


class Unrecordable(Exception):
    """The publish needs more than an LPUSH or a PUBLISH: send it through kombu instead."""


@dataclass
class Recorded:
    """What one publish would have sent: LPUSHes (list key, payload) and PUBLISHes."""

    pushes: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)


# Where the publish running in this thread (or task) keeps what it would send.
_RECORDING: ContextVar[Recorded | None] = ContextVar("singleton_recording", default=None)


class RecordingChannel(kombu_redis.Channel):
    """A kombu Redis channel whose deliveries are kept (see ``Recorder.record``), not sent.

    Threads share one: past the declarations, which reach Redis once per entity, a
    recorded publish does no I/O and keeps its commands apart from other threads'.
    """

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # As kombu's _put: the priority picks the list, kombu's dumps the payload.
        recorded = _RECORDING.get()
        expires = self._expires and queue in self._expires
        if recorded is None or kwargs.get("_publish_batch") or expires:
            raise Unrecordable(f"a publish to {queue!r} is more than one LPUSH")
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        recorded.pushes.append((key, dumps(message)))

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any) -> None:
        recorded = _RECORDING.get()
        if recorded is None or kwargs.get("_publish_batch"):
            raise Unrecordable(f"a publish to {exchange!r} is not kept")
        payload = dumps(message)
        topics = self._get_publish_topics(exchange, routing_key)
        recorded.events.extend((topic, payload) for topic in topics)


class Recorder:
    """A producer on the app's broker whose publishes are recorded (one per process)."""

    def __init__(self, app: Celery) -> None:
        """Open a channel on the app's broker (it pings once, as every kombu channel does)."""
        self._connection = app.connection_for_write()
        self._channel = RecordingChannel(self._connection.connection)
        self.producer = Producer(self._channel, auto_declare=False)

    def connection_kwargs(self) -> dict[str, Any]:
        """Return the settings of the broker's redis-py connections."""
        return dict(self._channel.pool.connection_kwargs)

    def keeps_keys_as_sent(self) -> bool:
        """Return False where kombu rewrites keys on their way out (a global key prefix)."""
        return not self._channel.global_keyprefix

    def record(self, publish: Callable[[Producer], Any]) -> Recorded:
        """Call `publish` with the recording producer; return what it would have sent.

        Raises:
            Unrecordable: the publish needs more than LPUSHes and PUBLISHes.
        """
        recorded = Recorded()
        token = _RECORDING.set(recorded)
        try:
            publish(self.producer)
        finally:
            _RECORDING.reset(token)
        return recorded


class Recorders:
    """The app's recorder (one per process), for a broker that is the store's database.

    Clients share it (``of``): one is often made per tick or per request.
    """

    @classmethod
    def of(cls, app: Celery, *, store_kwargs: dict[str, Any] | None) -> Recorders:
        """Return the app's Recorders, made on first use."""
        found = app.__dict__.get("_singleton_recorders")
        if found is None:
            found = app.__dict__["_singleton_recorders"] = cls(app, store_kwargs=store_kwargs)
        return found

    def __init__(self, app: Celery, *, store_kwargs: dict[str, Any] | None) -> None:
        """Bind to `app`; `store_kwargs` are the store's connection settings (None: a cluster)."""
        self._app = app
        self._store_kwargs = store_kwargs
        self._lock = threading.Lock()
        # (broker URL, process id, the recorder or None where the broker is not the store's)
        self._current: tuple[str, int, Recorder | None] | None = None

    def get(self) -> Recorder | None:
        """Return the process's recorder, or None when the broker is not the store's database."""
        broker = self._app.conf.broker_write_url or self._app.conf.broker_url
        current = self._current
        # A forked child makes its own; an app pointed at another broker decides again.
        if current is None or current[:2] != (broker, os.getpid()):
            with self._lock:
                current = self._current
                if current is None or current[:2] != (broker, os.getpid()):
                    current = self._current = (broker, os.getpid(), self._make())
        return current[2]

    def _make(self) -> Recorder | None:
        broker, store = self._app.connection_for_write(), self._store_kwargs
        if store is None or broker.transport_cls not in ("redis", "rediss"):
            return None
        # Another server is told apart without connecting to it (it may be down).
        if (broker.hostname, broker.port) != (store.get("host"), store.get("port")):
            return None
        recorder = Recorder(self._app)
        ours = recorder.connection_kwargs()
        same = all(ours.get(name) == store.get(name) for name in _SAME_DATABASE)
        return recorder if same and recorder.keeps_keys_as_sent() else None
