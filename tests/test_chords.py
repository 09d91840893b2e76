"""Chord callbacks and nested groups are steps of their run: stamped, gated and fenced.

Celery builds chords out of these canvases (a group followed by a task is a chord whose
callback is that task) and publishes the callback only when the header is done, from
the worker that finished the last member: the callback must still carry its run.
"""

from __future__ import annotations

import pytest

from singleton import RuntimeStatus
from singleton.runtime import runtime
from tests.durability import named
from tests.probe import NESTED_SHAPES, release, release_all
from tests.services import both_brokers
from tests.workers import wait_until

pytestmark = [pytest.mark.usefixtures("worker"), both_brokers]

def skipped_callback(worker, uid: str) -> bool:
    """Whether the worker logged that a gate refused a `seen` step of instance `uid`."""
    return any("Skipping tests.probe.seen[" in line and f"of instance {uid!r}" in line
               for line in worker.text().splitlines())


@pytest.mark.parametrize("shape", list(NESTED_SHAPES))
def test_every_task_of_a_nested_canvas_runs_as_a_step_of_its_run(app, client, uid, redis_client, shape):
    client.start_new("Nested", uid, {"key": uid, "shape": shape})
    # The appended completion task ends the run only if it, too, carries the run's stamp.
    assert client.wait_for_completion(uid, timeout=30).runtime_status is RuntimeStatus.COMPLETED
    run_id = runtime(app).store.read(uid)["run"]
    seen = named(redis_client, uid, "seen")
    assert sorted(e["name"] for e in seen) == sorted(NESTED_SHAPES[shape]), "each task once"
    runs = {e["name"]: (e["run"], e["current"]) for e in seen}
    unfenced = {name: run for name, run in runs.items() if run != (run_id, run_id)}
    assert not unfenced, f"tasks that ran outside run {run_id} (stamp, current_run): {unfenced}"


def test_a_chord_callback_of_a_terminated_run_runs_no_user_code(client, uid, redis_client, worker):
    client.start_new("HeldFanOut", uid, {"key": uid})
    try:
        wait_until(lambda: len(named(redis_client, uid, "start")) == 2, 20, "both members to start")
        client.terminate(uid, "stop the fan-out")
        for _ in range(2):
            release(redis_client, uid)
        # The members were running already and finish; the last one publishes the callback,
        # which reaches its gate and is refused (the worker logs the skip).
        wait_until(lambda: skipped_callback(worker, uid) or named(redis_client, uid, "seen"), 30,
                   "the callback to reach its gate")
    finally:
        release_all(redis_client, uid)
    assert len(named(redis_client, uid, "end")) == 2
    assert not named(redis_client, uid, "seen"), "the callback of the terminated run ran its user code"
    assert client.get_status(uid).runtime_status is RuntimeStatus.TERMINATED
