"""Shared set-up of the durability tests: workers with the shipped defaults, and beat's
reconciler pass run the way beat would run it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tests.holds  # noqa: F401  (its orchestrators, registered in this process too)
from singleton.recovery import reconcile, sender
from singleton.runtime import runtime
from singleton.settings import Settings
from tests.probe import events
from tests.workers import Worker, wait_until

HOLDS = ("tests.probe", "tests.holds")

# What a worker runs with when nothing is configured (celeryconfig's and Settings'
# defaults), undoing the test session's short leases and visibility timeout.
SHIPPED_DEFAULTS = {
    "SINGLETON_STEP_LEASE": str(Settings.step_lease),
    "SINGLETON_RUN_LEASE": str(Settings.run_lease),
    "SINGLETON_VISIBILITY_TIMEOUT": "3600",
    "BROKER_RESTORE_INTERVAL": "10",
    "SINGLETON_MAX_COUNTDOWN": "1800",
}


def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Yield a function that starts workers (loading the hold points); stop them after."""
    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        w = Worker(tmp_path / f"worker-{len(started)}.log", imports=HOLDS, **kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def module_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Yield one worker (2 processes, the test session's settings) with the hold points."""
    factory = worker_factory(tmp_path_factory.mktemp("holds"))
    yield next(factory)()
    next(factory, None)


def reconcile_once(app) -> dict[str, int]:
    """One pass of the reconciler, as beat's ``singleton.reconcile`` tick runs it."""
    rt = runtime(app)
    return dict(reconcile(rt.store, send=sender(app), resend_s=rt.settings.step_lease))


def named(redis_client, key: str, event: str) -> list[dict]:
    """The probe events of `key` that are `event`, oldest first."""
    return [e for e in events(redis_client, key) if e["event"] == event]


def settles(predicate, seconds: float) -> bool:
    """Poll `predicate` for up to `seconds`; return whether it came true (no failure)."""
    try:
        wait_until(predicate, seconds, "")
    except AssertionError:
        return False
    return True
