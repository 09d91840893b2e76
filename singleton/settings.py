"""The singleton layer's settings, read once from the Celery app's configuration."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

DAY = 24 * 60 * 60


@dataclass(frozen=True)
class Settings:
    """Tunables of the singleton layer; each is a ``singleton_<name>`` Celery setting.

    Attributes:
        key_prefix: prefix of every Redis key the layer writes.
        retention: seconds a terminal record is kept before it expires.
        step_lease: seconds a running step's lease lasts without renewal; a worker
            renews it every third of that while the step runs.
        max_connections: size of the per-process Redis connection pool.
        connection_wait: seconds a call waits for a free pooled connection.
        run_lease: seconds a live run may go without a sign of life (a step starting
            or ending, a running step's heartbeat) before the reconciler fails it as
            lost; the default of orchestrators that set no ``lease``.
        reconcile_interval: seconds between two passes of the reconciler (beat).
        max_countdown: the longest countdown a timer message is given, in seconds.
            Keep it well below the Redis broker's visibility timeout: a message
            held longer than that is delivered again. Longer waits hop.
    """

    key_prefix: str = "singleton"
    retention: float = 7 * DAY
    step_lease: float = 60.0
    max_connections: int = 50
    connection_wait: float = 10.0
    max_countdown: float = 1800.0
    run_lease: float = 300.0
    reconcile_interval: float = 30.0

    @classmethod
    def from_conf(cls, conf: Any) -> Settings:
        """Build settings from a Celery ``app.conf``, defaults for what it lacks."""
        values = {}
        for field in fields(cls):
            value = conf.get(f"singleton_{field.name}")
            if value is not None:
                values[field.name] = type(field.default)(value)
        return cls(**values)
