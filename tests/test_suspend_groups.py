"""Suspend and resume around groups, redeliveries and continue-as-new: no step is lost,
none runs twice, and a suspend that was accepted holds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proj.redis_server import free_port
from singleton import InstanceIsTerminal, InvalidTransition, RuntimeStatus, WaitTimeout
from singleton.outbox import relay
from singleton.runtime import runtime
from tests.durability import module_worker, named, settles
from tests.holds import arm, release_point
from tests.probe import release
from tests.workers import REPO, wait_until

RESUME = """
import sys
from proj import app
from singleton import OrchestrationClient, ServiceUnavailable
try:
    OrchestrationClient(app).resume(sys.argv[1])
    print("resumed", flush=True)
except ServiceUnavailable as exc:
    print("unavailable", exc, flush=True)
"""


@pytest.fixture(scope="module")
def holds_worker(tmp_path_factory):
    """One worker with the hold points loaded, for the tests of this module."""
    yield from module_worker(tmp_path_factory)


@pytest.mark.usefixtures("holds_worker")
def test_every_member_of_a_group_parked_by_a_suspend_runs_after_resume(app, client, uid, redis_client):
    client.start_new("HeldThenGroup", uid, {"key": uid, "members": 3})
    wait_until(lambda: named(redis_client, uid, "start"), 20, "the held step to start")
    client.suspend(uid)
    release(redis_client, uid)
    wait_until(lambda: named(redis_client, uid, "end"), 20, "the held step to end")
    # The three members reach their gates while the run is Suspended (none may run).
    settles(lambda: named(redis_client, uid, "start")[1:], 3)
    assert len(named(redis_client, uid, "start")) == 1, "a group member ran while Suspended"
    client.resume(uid)
    try:
        done = client.wait_for_completion(uid, timeout=6)
    except WaitTimeout as exc:
        members = len(named(redis_client, uid, "start")) - 1
        pytest.fail(f"the run never completed after resume: {members} of 3 group members ran "
                    f"({exc})")
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert len(named(redis_client, uid, "end")) == 4


@pytest.mark.usefixtures("holds_worker")
def test_a_resume_whose_publish_failed_has_every_parked_member_sent_by_the_reconciler(
    app, client, uid, redis_client
):
    client.start_new("HeldThenGroup", uid, {"key": uid, "members": 3})
    wait_until(lambda: named(redis_client, uid, "start"), 20, "the held step to start")
    client.suspend(uid)
    release(redis_client, uid)
    store = runtime(app).store
    parked = store.keys(uid).parked
    wait_until(lambda: redis_client.hlen(parked) == 3, 20, "the three members to park")
    # The resume is applied, but its caller's broker is gone: the members stay in the outbox.
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    resumed = subprocess.run([sys.executable, "-c", RESUME, uid], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert resumed.startswith("unavailable"), resumed
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING
    wait_until(lambda: relay(app) or named(redis_client, uid, "start")[1:], 30, "the reconciler's re-send")
    done = client.wait_for_completion(uid, timeout=20)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert len(named(redis_client, uid, "start")) == 4 and len(named(redis_client, uid, "end")) == 4


def test_a_step_redelivered_during_a_suspend_does_not_run_again_beside_the_first_delivery(
    client, uid, redis_client, holds_worker
):
    # The session's 6 s visibility timeout and a step held longer: the broker hands the
    # running step to the worker's other process while the run is Suspended.
    worker = holds_worker
    client.start_new("Held", uid, {"key": uid})
    task_id = wait_until(lambda: named(redis_client, uid, "start"), 20, "the step to start")[0]["task"]
    client.suspend(uid)
    received = f"Task tests.probe.held_step[{task_id}] received"
    wait_until(lambda: worker.log.read_text().count(received) >= 2, 30, "the step's redelivery")
    # Its gate finds the first delivery's lease live (busy comes before suspended), so it
    # waits rather than parks: a parked copy of a running step would run again on resume.
    waiting = f"to run tests.probe.held_step[{task_id}]: another delivery holds it"
    wait_until(lambda: waiting in worker.text(), 20, "the redelivery's gate verdict")
    assert not redis_client.hgetall(runtime(client._app).store.keys(uid).parked)
    client.resume(uid)
    twice = settles(lambda: len(named(redis_client, uid, "start")) >= 2, 4)
    for _ in range(2):
        release(redis_client, uid)
    done = client.wait_for_completion(uid, timeout=20)
    runs = named(redis_client, uid, "start")
    assert not twice and len(runs) == 1, (
        f"the step ran {len(runs)} times, the second beside the first (still held): "
        f"{[(e['task'], e['pid']) for e in runs]}")
    assert done.runtime_status is RuntimeStatus.COMPLETED


@pytest.mark.usefixtures("holds_worker")
def test_a_suspend_accepted_while_the_continue_step_runs_holds_the_next_run(client, uid, redis_client):
    arm(redis_client, uid, "continue")
    client.start_new("ContinueOnce", uid, {"key": uid, "again": True})
    wait_until(lambda: named(redis_client, uid, "held:continue"), 20, "the continue step to run")
    client.suspend(uid)  # accepted: the run is live
    release_point(redis_client, uid, "continue")
    wait_until(lambda: named(redis_client, uid, "finished:continue"), 20, "the continue step to end")
    suspended = settles(lambda: client.get_status(uid).runtime_status is RuntimeStatus.SUSPENDED, 3)
    status = client.get_status(uid)
    steps = len(named(redis_client, uid, "start"))
    try:
        client.resume(uid)
        resumed = "resumed"
    except (InvalidTransition, InstanceIsTerminal) as exc:
        resumed = str(exc)
    assert suspended and steps == 1, (
        f"the accepted suspend was dropped: the instance is {status.runtime_status.value}, "
        f"{steps - 1} step(s) of the next run ran, resume said: {resumed}")
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED
