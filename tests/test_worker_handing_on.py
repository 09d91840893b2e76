"""A step hands its run on: the worker stamps the next step of a plain chain, whose first
message stamps only the first step, and so the next step passes its own gate."""

from __future__ import annotations

import pytest
from celery import chain
from celery.canvas import Signature

from singleton import RuntimeStatus, orchestrator
from singleton.runs import STAMP, RunIdentity
from tests.durability import module_worker, named
from tests.probe import held_step, probe_step, release, release_all
from tests.workers import wait_until


@pytest.fixture(scope="module")
def holds_worker(tmp_path_factory):
    """One worker with the probe tasks loaded, for the tests of this module."""
    yield from module_worker(tmp_path_factory)


@orchestrator
def StepThenHeld(input: dict) -> Signature:  # noqa: N802
    """A probe step, then a held step: the first is done while the run is still live."""
    return chain(probe_step.si(0, f"{input['key']}-a"), held_step.si(f"{input['key']}-b"))


def logged(worker, text: str) -> bool:
    """Return True once `worker`'s log holds `text`."""
    return text in worker.text()


def test_a_redelivered_step_that_succeeded_hands_on_a_next_step_its_gate_stops(
    app, client, uid, redis_client, holds_worker
) -> None:
    # The first step's message again (a broker redelivery, or the reconciler's re-send
    # of its kept message), after it succeeded and while the next step runs: its gate
    # hands the stored result on, and the next step it publishes must carry the run's
    # stamp, or it would run its user code a second time, unfenced.
    a_key, b_key = f"{uid}-a", f"{uid}-b"
    client.start_new("StepThenHeld", uid, {"key": uid})
    try:
        held = wait_until(lambda: named(redis_client, b_key, "start"), 20, "the held step to start")
        b_id = held[0]["task"]
        a_id = named(redis_client, a_key, "start")[0]["task"]
        identity = RunIdentity(uid, client.get_status(uid).run_id, "StepThenHeld")
        first = probe_step.si(0, a_key).set(task_id=a_id, stamped_headers=[STAMP], **identity.stamps())
        first.apply_async(chain=[dict(held_step.si(b_key).set(task_id=b_id))], ignore_result=True)
        # The duplicate of the held step reaches its gate, which finds the lease taken.
        wait_until(lambda: logged(holds_worker, f"to run tests.probe.held_step[{b_id}]"), 20,
                   "the duplicate of the held step to wait at its gate")
        release(redis_client, b_key)
        done = client.wait_for_completion(uid, timeout=30)
    finally:
        release_all(redis_client, b_key)
    assert done.runtime_status is RuntimeStatus.COMPLETED and done.output == b_key
    # Once the run has ended, the waiting duplicate's gate stops it for good.
    wait_until(lambda: logged(holds_worker, f"Skipping tests.probe.held_step[{b_id}]"), 20,
               "the duplicate's gate to stop it")
    assert len(named(redis_client, a_key, "start")) == 1
    assert len(named(redis_client, b_key, "start")) == 1
