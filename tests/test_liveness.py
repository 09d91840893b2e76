"""Liveness under the shipped defaults: a dead worker's step is recovered by the layer,
and a run waiting behind a draining step is alive and keeps its retry budget."""

from __future__ import annotations

import time

import pytest

from singleton import RuntimeStatus, WaitTimeout
from singleton.settings import Settings
from tests.durability import SHIPPED_DEFAULTS, module_worker, reconcile_once, worker_factory
from tests.probe import events, release
from tests.services import Beat
from tests.workers import wait_until

STEP_LEASE = Settings.step_lease
# A beat with only the layer's reconciler, at its shipped interval.
RECONCILER_BEAT = """
from proj.celery import app
from singleton.recovery import reconcile_entry
from singleton.settings import Settings

app.conf.beat_schedule = {"singleton-reconcile": reconcile_entry(Settings.reconcile_interval)}
"""


@pytest.fixture
def workers(tmp_path):
    """Start workers for one test (``workers(env=...)``), stopped when it ends."""
    yield from worker_factory(tmp_path)


@pytest.fixture(scope="module")
def holds_worker(tmp_path_factory):
    """One worker with the hold points loaded, for the tests of this module."""
    yield from module_worker(tmp_path_factory)


def past(seconds: float) -> None:
    """Let `seconds` pass: here the condition is a duration (a drain that lasts)."""
    time.sleep(seconds)


def starts(redis_client, key: str) -> list[dict]:
    return [e for e in events(redis_client, key) if e["event"] == "start"]


@pytest.fixture
def reconciler_beat(tmp_path):
    """A real beat sending the reconciler's ticks every shipped interval (30 s)."""
    beat = Beat(tmp_path / "beat", RECONCILER_BEAT, name="reconcilerbeat").start()
    yield beat
    beat.stop()


@pytest.mark.slow  # the shipped step lease and reconcile interval
@pytest.mark.timeout(2 * STEP_LEASE + 90)
def test_a_sigkilled_workers_step_is_run_again_within_two_step_leases_under_the_defaults(
    client, uid, redis_client, workers, reconciler_beat
):
    first = workers(env=SHIPPED_DEFAULTS)
    client.start_new("HeldThenStep", uid, {"key": uid})
    killed_step = wait_until(lambda: starts(redis_client, uid), 20, "the held step to start")[0]
    first.kill()
    killed_at = time.time()
    workers(env=SHIPPED_DEFAULTS)  # the reconciler's ticks run here, with the shipped defaults
    # The re-executed step need not be held. Released only now: a pool child still dying
    # from the kill could otherwise take the release.
    release(redis_client, uid)
    deadline = killed_at + 2 * STEP_LEASE
    while len(starts(redis_client, uid)) < 2 and time.time() < deadline:
        time.sleep(0.5)  # polling: beat's reconciler, not the test, sends the step again
    again = [e for e in starts(redis_client, uid)[1:] if e["task"] == killed_step["task"]]
    status = client.get_status(uid)
    assert again, (
        f"the killed step was not run again within 2 x {STEP_LEASE:.0f} s (the step lease); "
        f"the run is {status.runtime_status.value}, its message waits in the broker for the "
        "visibility timeout")
    print(f"the killed step ran again {again[0]['t'] - killed_at:.1f} s after the kill")
    assert again[0]["t"] - killed_at <= 2 * STEP_LEASE
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED, done.output


@pytest.mark.usefixtures("holds_worker")
def test_a_run_waiting_behind_a_draining_step_longer_than_its_lease_is_not_lost(
    app, client, uid, redis_client
):
    old = f"{uid}-old"
    client.start_new("Held", uid, {"key": old})
    wait_until(lambda: starts(redis_client, old), 20, "the old run's step to start")
    client.terminate(uid)
    client.start_new("QuickShortLease", uid, {"key": uid})  # lease 3 s
    past(5)  # the old step drains for longer than the new run's lease
    reconcile_once(app)
    status = client.get_status(uid)
    release(redis_client, old)
    assert status.runtime_status.is_live, (
        f"the run waiting behind the draining step was failed: {status.runtime_status.value}, "
        f"{status.output!r}")
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED


@pytest.mark.usefixtures("holds_worker")
def test_waiting_behind_a_draining_step_does_not_spend_the_steps_retry_budget(
    client, uid, redis_client
):
    old = f"{uid}-old"
    client.start_new("Held", uid, {"key": old})
    wait_until(lambda: starts(redis_client, old), 20, "the old run's step to start")
    client.terminate(uid)
    client.start_new("RetryOnce", uid, {"key": uid})  # one self.retry() within max_retries=1
    past(3)  # the new run's step waits (two busy verdicts) while the old step drains
    release(redis_client, old)
    try:
        done = client.wait_for_completion(uid, timeout=20)
    except WaitTimeout as exc:
        pytest.fail(f"the run did not finish: {exc}")
    attempts = [e for e in events(redis_client, uid) if e["event"] == "attempt"]
    assert done.runtime_status is RuntimeStatus.COMPLETED, (
        f"the step's one retry failed the run: {done.output!r} (attempts: {attempts})")
