"""Step leases: one delivery's hold on one step, and the heartbeat that renews them.

A delivery that passed the step gate holds the step's lease in the store for
``step_lease`` seconds; while its user code runs, a daemon thread per process renews
it every third of that, so a second delivery of the same step (a redelivery after a
visibility timeout) waits instead of running the step twice at once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from .runs import RunIdentity
from .store import Store

logger = logging.getLogger(__name__)


class Lease:
    """One delivery's hold on one step, under the run's fence."""

    def __init__(self, store: Store, identity: RunIdentity, task_id: str) -> None:
        """Name a new hold (a fresh token) of step `task_id` of the run `identity`."""
        self.store, self.identity, self.task_id = store, identity, task_id
        self.token = uuid.uuid4().hex

    def _ids(self) -> dict[str, str]:
        return {"run_id": self.identity.run_id, "task_id": self.task_id, "token": self.token}

    def renew(self, lease_s: float) -> bool:
        """Extend the lease to `lease_s` seconds from now; False once it is lost."""
        return self.store.renew_step(self.identity.instance_id, lease_s=lease_s, **self._ids())

    def complete(self, result_json: str) -> bool:
        """Record the step's result; False if this delivery no longer holds the step."""
        return self.store.complete_step(self.identity.instance_id, result_json=result_json, **self._ids())

    def release(self) -> bool:
        """Drop the lease so another delivery may run the step at once."""
        return self.store.release_step(self.identity.instance_id, **self._ids())


class Heartbeat:
    """A daemon thread per process that renews the leases of running steps."""

    def __init__(self, lease_s: float) -> None:
        """Renew each kept lease to `lease_s` seconds, every third of that."""
        self._lease_s = lease_s
        self._interval = lease_s / 3
        self._leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tick = threading.Event()  # never set: a timer the loop waits on

    @contextmanager
    def keep(self, lease: Lease) -> Iterator[None]:
        """Renew `lease` in the background for as long as the block runs."""
        with self._lock:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                # A forked pool child inherits the attribute but not the thread.
                self._thread = threading.Thread(target=self._loop, daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._leases.discard(lease)

    def _loop(self) -> None:
        while True:
            self._tick.wait(self._interval)
            with self._lock:
                leases = list(self._leases)
            for lease in leases:
                try:
                    lease.renew(self._lease_s)
                except Exception:
                    logger.warning("Could not renew the lease of step %s", lease.task_id)
