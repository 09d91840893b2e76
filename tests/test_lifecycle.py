"""Each example's lifecycle, and every way a run ends, against a real worker."""

from __future__ import annotations

import pytest

from singleton import InstanceAlreadyExists, InstanceIsTerminal, RuntimeStatus
from tests.probe import events, release
from tests.services import both_brokers
from tests.workers import wait_until

pytestmark = [pytest.mark.usefixtures("worker"), both_brokers]


def status_of(client, instance_id):
    return client.get_status(instance_id).runtime_status


def test_hello_sequence_completes_with_three_greetings(client, uid):
    assert client.start_new("HelloSequence", uid) == uid
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert done.name == "HelloSequence"
    assert done.created_time <= done.last_updated_time


def test_start_without_an_id_gets_a_random_hex_id(client):
    instance_id = client.start_new("HelloSequence")
    assert len(instance_id) == 32 and int(instance_id, 16) >= 0
    assert client.wait_for_completion(instance_id, timeout=30).runtime_status is RuntimeStatus.COMPLETED


def test_delay_outputs_its_value_after_waiting(client, uid):
    client.start_new("Delay", uid, {"seconds": 0.5, "value": {"answer": 42}})
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == {"answer": 42}
    assert done.input == {"seconds": 0.5, "value": {"answer": 42}}


def test_always_fails_records_the_error_and_frees_the_id(client, uid):
    client.start_new("AlwaysFails", uid, "x")
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.FAILED
    assert done.output == "ValueError: boom"
    client.start_new("HelloSequence", uid)
    assert client.wait_for_completion(uid, timeout=30).runtime_status is RuntimeStatus.COMPLETED


def test_second_start_while_running_is_refused(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    wait_until(lambda: status_of(client, uid) is RuntimeStatus.RUNNING, 20, "the run to start")
    with pytest.raises(InstanceAlreadyExists) as refused:
        client.start_new("Probe", uid, {"seconds": 0, "key": uid})
    assert refused.value.runtime_status is RuntimeStatus.RUNNING
    assert refused.value.instance_id == uid
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=30)
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]


def test_start_after_completion_makes_a_new_run(client, uid):
    client.start_new("HelloSequence", uid)
    first = client.wait_for_completion(uid, timeout=30)
    client.start_new("HelloSequence", uid)
    second = client.wait_for_completion(uid, timeout=30)
    assert second.run_id != first.run_id
    assert second.runtime_status is RuntimeStatus.COMPLETED
    assert second.created_time > first.created_time


def test_terminated_run_never_runs_its_queued_steps_even_after_a_restart(client, uid, redis_client):
    # A held step, then another: terminate during the first; the second is still queued
    # (it travels in the chain) when a new run of the same ID starts.
    old_key, new_key = f"{uid}-old", f"{uid}-new"
    client.start_new("HeldThenStep", uid, {"key": old_key})
    wait_until(lambda: events(redis_client, old_key), 20, "the first step to start")
    client.terminate(uid, reason="changed my mind")
    terminated = client.get_status(uid)
    assert terminated.runtime_status is RuntimeStatus.TERMINATED
    assert terminated.output == "changed my mind"
    client.start_new("Probe", uid, {"seconds": 0, "key": new_key, "steps": 2})
    # The old run's step in flight finishes (the new run's steps wait for it); its chain
    # stops there.
    release(redis_client, old_key)
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED and done.output == new_key
    wait_until(lambda: len(events(redis_client, old_key)) >= 2, 20, "the in-flight step to end")
    assert [e["event"] for e in events(redis_client, old_key)] == ["start", "end"]
    # The old run wrote nothing into the new run's record.
    assert client.get_status(uid) == done


def running(app, task_id: str) -> bool:
    """Return True while a worker reports task `task_id` as executing."""
    active = app.control.inspect(timeout=1.0).active() or {}
    return any(task["id"] == task_id for tasks in active.values() for task in tasks)


def test_terminated_runs_last_step_cannot_complete_the_next_run(app, client, uid, redis_client):
    # The old run's only step is in flight when it is terminated and the ID restarts;
    # when that step returns, its run's completion must not write into the new run, and
    # the new run's step waits for it: two runs of one ID never execute at once.
    old_key, new_key = f"{uid}-old", f"{uid}-new"
    client.start_new("Held", uid, {"key": old_key})
    wait_until(lambda: events(redis_client, old_key), 20, "the old step to start")
    client.terminate(uid, reason="restart")
    client.start_new("Held", uid, {"key": new_key})
    new_run = client.get_status(uid).run_id
    old_task = events(redis_client, old_key)[0]["task"]
    release(redis_client, old_key)
    wait_until(lambda: len(events(redis_client, old_key)) == 2 and not running(app, old_task), 20,
               "the old run's last step to return")
    still = client.get_status(uid)
    assert still.run_id == new_run and still.runtime_status.is_live
    release(redis_client, new_key)
    done = client.wait_for_completion(uid, timeout=30)
    assert done.run_id == new_run
    assert done.runtime_status is RuntimeStatus.COMPLETED and done.output == new_key
    old_end = next(e["t"] for e in events(redis_client, old_key) if e["event"] == "end")
    new_start = next(e["t"] for e in events(redis_client, new_key) if e["event"] == "start")
    assert new_start >= old_end


def test_terminate_of_a_finished_instance_is_refused(client, uid):
    client.start_new("HelloSequence", uid)
    client.wait_for_completion(uid, timeout=30)
    with pytest.raises(InstanceIsTerminal) as refused:
        client.terminate(uid, "too late")
    assert refused.value.runtime_status is RuntimeStatus.COMPLETED


def test_retry_in_a_step_keeps_the_run_running_and_then_completes(client, uid, redis_client):
    client.start_new("Flaky", uid, {"key": uid})
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == "succeeded on attempt 3"
    assert [e["attempt"] for e in events(redis_client, uid)] == [1, 2, 3]


def test_pool_child_killed_mid_step_ends_the_run_as_failed(client, uid, redis_client):
    client.start_new("Suicide", uid, {"key": uid})
    done = client.wait_for_completion(uid, timeout=60)
    assert done.runtime_status is RuntimeStatus.FAILED
    assert done.output.startswith("WorkerLostError")
    assert [e["event"] for e in events(redis_client, uid)] == ["start"]


def test_hard_time_limit_ends_the_run_as_failed(client, uid, redis_client):
    client.start_new("Overtime", uid, {"key": uid})
    done = client.wait_for_completion(uid, timeout=60)
    assert done.runtime_status is RuntimeStatus.FAILED
    assert done.output.startswith("TimeLimitExceeded")
    assert [e["event"] for e in events(redis_client, uid)] == ["start"]


def test_revoking_a_running_step_ends_the_run_as_terminated(app, client, uid, redis_client):
    client.start_new("HeldThenStep", uid, {"key": uid})
    started = wait_until(lambda: events(redis_client, uid), 20, "the step to start")
    app.control.revoke(started[0]["task"], terminate=True, signal="SIGKILL")
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.TERMINATED
    assert done.output == "revoked"


def test_group_inside_a_chain_completes_with_the_joined_result(client, uid):
    client.start_new("FanOut", uid, ["Tokyo", "Seattle", "London"])
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == "Hello Tokyo!, Hello Seattle!, Hello London!"


def test_failing_member_of_a_group_fails_the_run(client, uid):
    client.start_new("FanOut", uid, ["Tokyo", "nowhere", "London"])
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.FAILED
    assert done.output == "ValueError: no such city"


def test_last_step_that_replaces_itself_still_completes_the_run(client, uid, redis_client):
    client.start_new("Replacing", uid, {"key": uid})
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == uid
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end", "replace", "start", "end"]


def test_canvas_ending_in_a_group_completes_with_the_groups_results(client, uid):
    client.start_new("GroupAtTheEnd", uid, ["Tokyo", "Lima"])
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == ["Hello Tokyo!", "Hello Lima!"]
