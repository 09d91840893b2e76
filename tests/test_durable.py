"""External events, continue-as-new, custom status, suspend/resume and restart, with a real worker."""

from __future__ import annotations

import threading

import pytest

from singleton import (
    InstanceAlreadyExists,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidEventName,
    InvalidTransition,
    RuntimeStatus,
)
from singleton.durable import TIMER_ID_PREFIX
from singleton.runtime import runtime
from tests.probe import events, release
from tests.services import both_brokers
from tests.workers import wait_until

pytestmark = [pytest.mark.usefixtures("worker"), both_brokers]


def record_of(app, instance_id: str) -> dict:
    return runtime(app).store.read(instance_id) or {}


def parked(app, instance_id: str) -> bool:
    """A wait's chain, or a delivery stopped by a suspend, is parked in the instance's keys."""
    store = runtime(app).store
    return bool(record_of(app, instance_id).get("park")) or bool(
        app.backend.client.hlen(store.keys(instance_id).parked))


def got(redis_client, key: str) -> list:
    return [e["value"] for e in events(redis_client, key) if e["event"] == "got"]


# -- external events ---------------------------------------------------------------
def test_approval_workflow_outputs_the_event_data(app, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    wait_until(lambda: parked(app, uid), 20, "the run to park at its wait")
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING
    client.raise_event(uid, "Approval", {"by": "ada", "ok": True})
    done = client.wait_for_completion(uid, timeout=20)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == {"approved": {"by": "ada", "ok": True}}


def test_a_parked_run_holds_no_worker_slot(app, client, uid, redis_client):
    # The worker has two pool processes: three parked runs must not stop a fourth run.
    waiting = [f"{uid}-{n}" for n in range(3)]
    for instance_id in waiting:
        client.start_new("ApprovalWorkflow", instance_id)
    wait_until(lambda: all(parked(app, i) for i in waiting), 20, "three runs to park")
    client.start_new("HelloSequence", uid)
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED
    for instance_id in waiting:
        client.terminate(instance_id)


def test_an_event_raised_before_the_wait_is_consumed(app, client, uid, redis_client):
    client.start_new("WaitTwice", uid, {"key": uid, "hold": True})
    wait_until(lambda: events(redis_client, uid), 20, "the held step to start")
    client.raise_event(uid, "Ping", "early")
    release(redis_client, uid)
    wait_until(lambda: parked(app, uid), 20, "the second wait to park")
    client.raise_event(uid, "Ping", "late")
    assert client.wait_for_completion(uid, timeout=20).output == "late"
    assert got(redis_client, uid) == ["early", "late"]


def test_two_events_with_the_same_name_are_consumed_in_order(app, client, uid, redis_client):
    client.start_new("WaitTwice", uid, {"key": uid, "hold": True})
    wait_until(lambda: events(redis_client, uid), 20, "the held step to start")
    client.raise_event(uid, "Ping", 1)
    client.raise_event(uid, "Ping", 2)
    release(redis_client, uid)
    assert client.wait_for_completion(uid, timeout=20).output == 2
    assert got(redis_client, uid) == [1, 2]


def test_events_raised_back_to_back_at_a_parked_run_keep_their_order(app, client, uid, redis_client):
    client.start_new("WaitTwice", uid, {"key": uid})
    wait_until(lambda: parked(app, uid), 20, "the run to park")
    for n in range(1, 4):
        client.raise_event(uid, "Ping", n)
    assert client.wait_for_completion(uid, timeout=20).output == 2
    assert got(redis_client, uid) == [1, 2]


def test_a_wait_as_the_last_step_completes_the_run_with_the_event(app, client, uid):
    client.start_new("WaitLast", uid)
    wait_until(lambda: parked(app, uid), 20, "the run to park")
    client.raise_event(uid, "Done", [1, "two"])
    done = client.wait_for_completion(uid, timeout=10)
    assert (done.runtime_status, done.output) == (RuntimeStatus.COMPLETED, [1, "two"])


def test_an_event_for_another_name_is_buffered_not_consumed(app, client, uid):
    client.start_new("WaitLast", uid)
    wait_until(lambda: parked(app, uid), 20, "the run to park")
    client.raise_event(uid, "Other", 1)
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING
    client.raise_event(uid, "Done", 2)
    assert client.wait_for_completion(uid, timeout=10).output == 2


def test_an_event_for_an_unknown_instance_is_not_found(client, uid):
    with pytest.raises(InstanceNotFound):
        client.raise_event(uid, "Approval", True)


def test_an_event_for_a_finished_instance_is_refused_as_terminal(client, uid):
    client.start_new("HelloSequence", uid)
    client.wait_for_completion(uid, timeout=20)
    with pytest.raises(InstanceIsTerminal) as refused:
        client.raise_event(uid, "Approval", True)
    assert refused.value.runtime_status is RuntimeStatus.COMPLETED


@pytest.mark.parametrize("name", ["", "a\nb", "x" * 257, 7])
def test_an_invalid_event_name_is_refused(client, name):
    with pytest.raises(InvalidEventName):
        client.raise_event("any-instance", name, None)


def test_a_wait_timeout_without_a_default_fails_the_run(client, uid):
    client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 0.5})
    done = client.wait_for_completion(uid, timeout=20)
    assert done.runtime_status is RuntimeStatus.FAILED
    assert done.output == "EventTimeout: no 'Never' event within 0.5 s"


def test_a_wait_timeout_with_a_default_continues_with_it(client, uid, redis_client):
    client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 0.5, "default": "fallback"})
    done = client.wait_for_completion(uid, timeout=20)
    assert (done.runtime_status, done.output) == (RuntimeStatus.COMPLETED, "fallback")
    assert got(redis_client, uid) == ["fallback"]


def test_a_wait_longer_than_one_timer_hop_still_times_out(client, uid):
    # The tests' timers hop at most 3 s (SINGLETON_MAX_COUNTDOWN): this wait takes two hops.
    client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 4, "default": "late"})
    assert client.wait_for_completion(uid, timeout=30).output == "late"


def kept_timers(app, instance_id: str) -> dict[bytes, bytes]:
    """The event-timeout timers kept in the run's steps (task id -> marker)."""
    steps = app.backend.client.hgetall(runtime(app).store.keys(instance_id).steps)
    return {task: marker for task, marker in steps.items() if task.startswith(TIMER_ID_PREFIX.encode())}


def test_a_hopping_timers_kept_entry_follows_each_hop(app, client, uid):
    # As above, two hops: the timer is kept under one task id, due later with each hop.
    client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 4, "default": "late"})
    seen: list[dict[bytes, bytes]] = []

    def over() -> bool:
        kept = kept_timers(app, uid)
        if kept and kept not in seen:
            seen.append(kept)
        return client.get_status(uid).runtime_status.is_terminal

    wait_until(over, 30, "the timeout to hand on its default")
    assert client.get_status(uid).output == "late"
    assert len(seen) == 2 and seen[0].keys() == seen[1].keys(), seen
    (first,), (second,) = seen[0].values(), seen[1].values()
    assert int(second.rsplit(b":", 1)[1]) > int(first.rsplit(b":", 1)[1])


def test_an_event_that_arrives_before_the_timeout_wins(app, client, uid):
    client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 2})
    wait_until(lambda: parked(app, uid), 20, "the run to park")
    client.raise_event(uid, "Never", "in time")
    done = client.wait_for_completion(uid, timeout=20)
    assert (done.runtime_status, done.output) == (RuntimeStatus.COMPLETED, "in time")


# -- eternal orchestrations and custom status --------------------------------------
def custom_count(client, uid) -> int:
    status = client.get_status(uid)
    return (status.custom_status or {}).get("count", -1)


def test_counter_counts_up_under_one_id_until_terminated(client, uid):
    client.start_new("Counter", uid, {"count": 0, "interval": 0.2})
    wait_until(lambda: custom_count(client, uid) >= 3, 30, "three cycles")
    status = client.get_status(uid)
    assert status.runtime_status in (RuntimeStatus.RUNNING, RuntimeStatus.CONTINUED_AS_NEW)
    assert status.input["count"] >= 3
    client.terminate(uid, "enough")
    stopped = custom_count(client, uid)
    done = client.get_status(uid)
    assert done.runtime_status is RuntimeStatus.TERMINATED
    # A cycle in flight may not write after the terminate: its run is fenced out.
    assert custom_count(client, uid) == stopped


def test_a_delay_longer_than_one_timer_hop_continues_through_the_timer(client, uid):
    # The tests' timers hop at most 3 s: a 4 s interval goes through singleton.timer.
    client.start_new("Counter", uid, {"count": 0, "interval": 4})
    wait_until(lambda: custom_count(client, uid) == 0, 20, "the first cycle")
    # ContinuedAsNew until the continue step has published the next run (slower on RabbitMQ).
    wait_until(lambda: client.get_status(uid).runtime_status is RuntimeStatus.RUNNING, 20,
               "the next run to be published and Running")
    wait_until(lambda: custom_count(client, uid) == 1, 20, "the second cycle, 4 s later")
    client.terminate(uid)


def test_continue_as_new_under_50_concurrent_starts_never_lets_one_in(client, uid):
    client.start_new("Counter", uid, {"count": 0, "interval": 0.1})
    wait_until(lambda: custom_count(client, uid) >= 1, 30, "the first cycle")
    started, refused = [], []
    for _ in range(8):  # bursts across several continue-as-new transitions
        barrier = threading.Barrier(50)

        def contend(barrier: threading.Barrier = barrier) -> None:
            barrier.wait(10)
            try:
                started.append(client.start_new("Counter", uid, {"count": 1000, "interval": 1}))
            except InstanceAlreadyExists as exc:
                refused.append(exc.runtime_status)

        threads = [threading.Thread(target=contend) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert started == []
    assert len(refused) == 400
    assert custom_count(client, uid) < 1000
    client.terminate(uid)


# -- suspend and resume -------------------------------------------------------------
def step_starts(redis_client, key: str) -> int:
    return sum(e["event"] == "start" for e in events(redis_client, key))


def test_suspend_stops_the_next_step_from_starting_and_resume_continues(
    app, client, uid, redis_client
):
    client.start_new("HeldThenStep", uid, {"key": uid})
    wait_until(lambda: step_starts(redis_client, uid) == 1, 20, "the held step to start")
    client.suspend(uid, "maintenance")
    assert client.get_status(uid).runtime_status is RuntimeStatus.SUSPENDED
    release(redis_client, uid)  # the step in flight finishes...
    wait_until(lambda: parked(app, uid), 20, "the next step to park")
    assert step_starts(redis_client, uid) == 1  # ...and the next one did not start
    client.resume(uid, "done")
    done = client.wait_for_completion(uid, timeout=20)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert step_starts(redis_client, uid) == 2


def test_suspending_a_suspended_run_is_a_conflict(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    client.suspend(uid)
    with pytest.raises(InvalidTransition) as conflict:
        client.suspend(uid)
    assert conflict.value.runtime_status is RuntimeStatus.SUSPENDED
    client.terminate(uid)
    release(redis_client, uid)


def test_resuming_a_running_run_is_a_conflict(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    with pytest.raises(InvalidTransition):
        client.resume(uid)
    client.terminate(uid)
    release(redis_client, uid)


def test_terminate_works_on_a_suspended_run(app, client, uid, redis_client):
    client.start_new("HeldThenStep", uid, {"key": uid})
    wait_until(lambda: step_starts(redis_client, uid) == 1, 20, "the held step to start")
    client.suspend(uid)
    release(redis_client, uid)
    wait_until(lambda: parked(app, uid), 20, "the next step to park")
    client.terminate(uid, "stop")
    assert client.get_status(uid).runtime_status is RuntimeStatus.TERMINATED
    with pytest.raises(InstanceIsTerminal):
        client.resume(uid)
    assert step_starts(redis_client, uid) == 1


def test_an_event_raised_while_suspended_waits_for_resume(app, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    wait_until(lambda: parked(app, uid), 20, "the run to park")
    client.suspend(uid)
    client.raise_event(uid, "Approval", "yes")
    assert client.get_status(uid).runtime_status is RuntimeStatus.SUSPENDED
    client.resume(uid)
    assert client.wait_for_completion(uid, timeout=20).output == {"approved": "yes"}


# -- restart ---------------------------------------------------------------------------
def test_restart_with_a_new_id_runs_the_original_input(client, uid):
    client.start_new("Delay", uid, {"seconds": 0, "value": "v"})
    client.wait_for_completion(uid, timeout=20)
    new_id = client.restart(uid)
    assert new_id != uid
    done = client.wait_for_completion(new_id, timeout=20)
    assert (done.name, done.input, done.output) == ("Delay", {"seconds": 0, "value": "v"}, "v")


def test_restart_with_the_same_id_needs_a_terminal_instance(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    # Held first, so the release below ends this run's step and is not left for the next run's.
    wait_until(lambda: events(redis_client, uid), 20, "the held step to start")
    with pytest.raises(InstanceAlreadyExists):
        client.restart(uid, new_instance_id=False)
    client.terminate(uid)
    release(redis_client, uid)
    assert client.restart(uid, new_instance_id=False) == uid
    assert client.get_status(uid).runtime_status.is_live
    client.terminate(uid)
    release(redis_client, uid)


def test_restart_of_an_unknown_instance_is_not_found(client, uid):
    with pytest.raises(InstanceNotFound):
        client.restart(uid)
