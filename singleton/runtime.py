"""The per-app runtime: the settings, store and step heartbeat of one Celery app.

Everything of the layer that needs Redis or a setting asks ``runtime(app)``; it is
made on first use, after the app's configuration is final, and once per process.
"""

from __future__ import annotations

from celery import Celery

from .leases import Heartbeat
from .settings import Settings, check_timings
from .store import Store


class Runtime:
    """Per-app state of the singleton layer: settings, store and step heartbeat."""

    def __init__(self, app: Celery) -> None:
        """Read and check the app's settings, and make its store (no connection yet).

        Raises:
            InvalidSettings: the timing settings contradict each other.
        """
        self.settings = Settings.from_conf(app.conf)
        check_timings(self.settings, app.conf)
        self.store = Store.from_app(app, self.settings)
        self.heartbeat = Heartbeat(self.settings.step_lease)


def runtime(app: Celery) -> Runtime:
    """Return the app's Runtime, creating it on first use."""
    rt = app.__dict__.get("_singleton_runtime")
    if rt is None:
        rt = app.__dict__["_singleton_runtime"] = Runtime(app)
    return rt
