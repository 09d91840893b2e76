"""Starts of one instance ID at once in one process: one builds its run, the rest share a probe.

A start builds its run's message before it claims (the claim carries it), which a
refused start throws away. When a thread starts an ID that another thread of the
process is already starting (``Contention.leading``), it asks the claim script only
whether the policies refuse it: a probe, with no canvas and no message. The starts
that arrive while the first one is under way share one probe, sent once that first
start has finished: it counts each of their refusals and answers every one of them.
That answer is as good as each start's own, since every one of them was waiting
before the probe was sent: the script ran while all of them were under way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Celery

from .store import ClaimResult

# How long a start waits for the first start of its ID, or for a shared probe (s); past
# it, the start goes on by itself.
WAIT_S = 1.0


class _Probe:
    """One probe not sent yet, and how many starts wait for its answer."""

    def __init__(self) -> None:
        self.waiting = 1
        self.answer: ClaimResult | None = None
        self.done = threading.Event()


class Contention:
    """The starts under way in one process: the first of each ID, and the probes of the others."""

    @classmethod
    def of(cls, app: Celery) -> Contention:
        """Return the app's Contention (its clients share it), made on first use."""
        found = app.__dict__.get("_singleton_contention")
        if found is None:
            found = app.__dict__["_singleton_contention"] = cls()
        return found

    def __init__(self) -> None:
        """Start with no start under way."""
        self._lock = threading.Lock()
        self._first: dict[str, threading.Event] = {}
        self._probes: dict[tuple[str, ...], _Probe] = {}

    @contextmanager
    def leading(self, instance_id: str) -> Iterator[threading.Event | None]:
        """Yield None to the only start of `instance_id` under way in the process, and to
        any other the event that is set when that first start has finished."""
        mine = threading.Event()
        with self._lock:
            first = self._first.setdefault(instance_id, mine)
        if first is not mine:
            yield first
            return
        try:
            yield None
        finally:
            with self._lock:
                del self._first[instance_id]
            mine.set()

    def probe(self, key: tuple[str, ...], *, first: threading.Event,
              send: Callable[[int], ClaimResult]) -> tuple[ClaimResult, bool]:
        """Return the answer of the probe for `key` (the ID and the start's policies), and
        whether this start sent it; ``send(n)`` sends a probe answering `n` starts.

        The first start to ask opens the probe, waits for `first`, then sends it for every
        start that asked meanwhile; a start that asks later opens the next one.
        """
        with self._lock:
            probe = self._probes.get(key)
            joined = probe is not None
            if joined:
                probe.waiting += 1
            else:
                probe = self._probes[key] = _Probe()
        if joined:
            if probe.done.wait(2 * WAIT_S) and probe.answer is not None:
                return probe.answer, False
            return send(1), True  # its sender failed or hangs: probe alone
        first.wait(WAIT_S)
        with self._lock:
            del self._probes[key]
            waiting = probe.waiting
        try:
            probe.answer = send(waiting)
        finally:
            probe.done.set()
        return probe.answer, True
