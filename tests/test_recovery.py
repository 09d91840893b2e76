"""Stuck-run recovery: the reconciler fails lost and overdue runs and frees their IDs."""

from __future__ import annotations

import time
import uuid

import pytest

from singleton import RuntimeStatus
from singleton.recovery import RECONCILE_TASK, reconcile
from singleton.runtime import runtime
from singleton.store import StepVerdict, Store
from tests.probe import events, release
from tests.workers import wait_until


def claim(store: Store, instance_id: str, **options):
    return store.claim(instance_id, name="Probe", run_id=uuid.uuid4().hex, input_json="null", **options)


def past(seconds: float) -> None:
    """Let a lease or timeout of `seconds` pass (the condition is a wall-clock duration)."""
    time.sleep(seconds)


# -- the reconciler against the store ---------------------------------------------------
def test_a_run_silent_beyond_its_lease_is_failed_as_lost_and_its_id_freed(store: Store) -> None:
    claim(store, "quiet", lease_s=0.2)
    assert reconcile(store) == {}  # not overdue yet
    past(0.3)
    assert reconcile(store) == {"lost": 1}
    record = store.read("quiet")
    assert record["status"] == "Failed" and record["output"].startswith('"Lost')
    assert claim(store, "quiet").claimed


def test_a_renewed_step_keeps_its_run_alive_past_the_lease(store: Store) -> None:
    run = claim(store, "busy", lease_s=0.3)
    store.begin_step("busy", run_id=run.run_id, task_id="t1", token="tok", lease_s=30, name="step")
    for _ in range(4):
        past(0.15)
        assert store.renew_step("busy", run_id=run.run_id, task_id="t1", token="tok", lease_s=30)
        assert reconcile(store) == {}
    assert store.read("busy")["status"] == "Running"


def test_a_suspended_run_is_not_lost(store: Store) -> None:
    claim(store, "paused", lease_s=0.1)
    store.suspend("paused")
    past(0.2)
    assert reconcile(store) == {"parked": 1}
    assert store.read("paused")["status"] == "Suspended"


def test_a_run_past_its_timeout_fails_as_timed_out_even_while_alive(store: Store) -> None:
    run = claim(store, "slow", lease_s=30, timeout_s=0.2)
    store.begin_step("slow", run_id=run.run_id, task_id="t1", token="tok", lease_s=30, name="step")
    past(0.3)
    assert store.renew_step("slow", run_id=run.run_id, task_id="t1", token="tok", lease_s=30)
    assert reconcile(store) == {"timed_out": 1}
    assert store.read("slow")["output"].startswith('"TimedOut')


def test_finished_and_purged_runs_leave_the_alive_index(store: Store) -> None:
    run = claim(store, "done", lease_s=0.1)
    store.end_run("done", run_id=run.run_id, status=RuntimeStatus.COMPLETED, output_json="1")
    claim(store, "purged", lease_s=0.1)
    store.terminate("purged", reason_json='"x"')
    store.purge("purged")
    past(0.2)
    assert reconcile(store) == {}


def test_a_step_whose_lease_ran_out_is_handed_back_to_be_sent_again_not_lost(store: Store) -> None:
    run = claim(store, "dead", lease_s=30)
    store.begin_step("dead", run_id=run.run_id, task_id="t1", token="tok", lease_s=0.2, name="step",
                     message_json='{"task": "step"}')
    sent: list[str] = []
    assert reconcile(store, send=sent.append, resend_s=30) == {}  # its lease still holds
    past(0.3)  # no heartbeat renews it: its worker died
    assert reconcile(store, send=sent.append, resend_s=30) == {"resent": 1}
    assert sent == ['{"task": "step"}'] and store.read("dead")["status"] == "Running"
    assert reconcile(store, send=sent.append, resend_s=30) == {}  # sent once per resend_s
    # The re-sent delivery takes the step at once: no lease holds it.
    gate = store.begin_step("dead", run_id=run.run_id, task_id="t1", token="tok2", lease_s=30,
                            name="step", message_json='{"task": "step"}')
    assert gate.outcome is StepVerdict.RUN and gate.fence == run.fence


def test_a_step_sent_again_into_a_suspend_parks_and_is_not_sent_again(store: Store) -> None:
    run = claim(store, "paused-dead", lease_s=30)
    ids = {"run_id": run.run_id, "task_id": "t1"}
    store.begin_step("paused-dead", token="tok", lease_s=0.2, name="step", message_json='{"n": 1}', **ids)
    past(0.3)  # its worker died
    store.suspend("paused-dead")
    sent: list[str] = []
    assert reconcile(store, send=sent.append, resend_s=0.2) == {"resent": 1}
    # The re-sent delivery finds the run suspended and parks (its marker goes with it).
    gate = store.begin_step("paused-dead", token="tok2", lease_s=30, name="step", **ids)
    assert gate.outcome is StepVerdict.SUSPENDED
    park = '{"kind": "suspend", "task": "t1"}'
    assert store.park("paused-dead", park_json=park, **ids).outcome is StepVerdict.PARKED
    past(0.3)  # the re-send's own wait runs out: a parked step is not sent once more
    assert reconcile(store, send=sent.append, resend_s=0.2) == {"parked": 1}
    assert sent == ['{"n": 1}'] and store.resume("paused-dead").steps == (park,)


def test_a_step_that_succeeded_but_never_started_its_successor_is_sent_once_then_the_run_is_lost(
    store: Store,
) -> None:
    run = claim(store, "gap", lease_s=0.2)
    ids = {"run_id": run.run_id, "task_id": "t1", "token": "tok"}
    store.begin_step("gap", lease_s=30, name="step", message_json='{"task": "step"}', **ids)
    store.complete_step("gap", result_json='"r"', **ids)
    sent: list[str] = []
    past(0.3)  # silent for the run's lease: the next step never started
    assert reconcile(store, send=sent.append) == {"resent": 1}
    assert sent == ['{"task": "step"}']
    past(0.3)
    assert reconcile(store, send=sent.append) == {"lost": 1}
    assert len(sent) == 1


def test_the_next_steps_start_drops_the_kept_message_of_the_step_before(store: Store) -> None:
    run = claim(store, "chain", lease_s=0.2)
    ids = {"run_id": run.run_id, "token": "tok"}
    store.begin_step("chain", task_id="t1", lease_s=30, message_json='{"n": 1}', **ids)
    store.complete_step("chain", task_id="t1", result_json='"r"', **ids)
    store.begin_step("chain", task_id="t2", lease_s=30, message_json='{"n": 2}', parent_id="t1", **ids)
    store.complete_step("chain", task_id="t2", result_json='"r"', **ids)
    sent: list[str] = []
    past(0.3)
    assert reconcile(store, send=sent.append) == {"resent": 1}
    assert sent == ['{"n": 2}']


# -- with a real worker -------------------------------------------------------------------
@pytest.mark.usefixtures("worker")
def test_a_run_whose_message_nobody_consumes_is_freed_by_the_reconciler_task(app, client, uid):
    client.start_new("Unconsumed", uid, {"key": uid})
    past(1.2)
    app.send_task(RECONCILE_TASK)
    done = wait_until(lambda: (s := client.get_status(uid)).runtime_status.is_terminal and s, 20,
                      "the worker's reconciler to fail the run")
    assert done.runtime_status is RuntimeStatus.FAILED
    client.start_new("HelloSequence", uid)
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED


@pytest.mark.usefixtures("worker")
def test_a_step_longer_than_the_lease_keeps_its_run_alive(app, client, uid, redis_client):
    client.start_new("LongerThanLease", uid, {"key": uid})
    wait_until(lambda: events(redis_client, uid), 20, "the step to start")
    store = runtime(app).store
    deadline = time.monotonic() + 20
    while client.get_status(uid).runtime_status.is_live:
        assert time.monotonic() < deadline, "the run did not finish in 20 s"
        assert reconcile(store).get("lost", 0) == 0
        time.sleep(0.25)  # the reconciler's pace during the step, not a synchronisation
    assert client.get_status(uid).runtime_status is RuntimeStatus.COMPLETED


def test_an_overdue_run_fails_as_timed_out_and_its_next_step_never_starts(
    app, client, uid, redis_client, worker
):
    client.start_new("Overdue", uid, {"key": uid})
    wait_until(lambda: events(redis_client, uid), 20, "the first step to start")
    store = runtime(app).store
    wait_until(lambda: reconcile(store).get("timed_out"), 10, "the timeout to pass")
    assert client.get_status(uid).output.startswith("TimedOut")
    # The step in flight finishes; the next one reaches its gate and is skipped.
    release(redis_client, uid)
    wait_until(lambda: f"instance {uid!r} is not running this step" in worker.log.read_text(), 20,
               "the next step to be skipped")
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]
