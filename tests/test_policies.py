"""Start policies, idempotent starts and step history, with a real worker."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from singleton import IfFinished, IfLive, InstanceAlreadyExists, InvalidArgument, RuntimeStatus, WaitTimeout
from tests.durability import named
from tests.probe import events, release
from tests.workers import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def run_id(client, instance_id: str) -> str:
    return client.get_status(instance_id).run_id


def finished(client, uid: str, name: str, input=None) -> RuntimeStatus:
    client.start_new(name, uid, input)
    return client.wait_for_completion(uid, timeout=20).runtime_status


# -- while a live run holds the ID -------------------------------------------------------
def test_use_existing_answers_with_the_live_run(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    first = run_id(client, uid)
    assert client.start_new("Held", uid, {"key": uid}, if_live=IfLive.USE_EXISTING) == uid
    assert run_id(client, uid) == first
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=20)
    assert sum(e["event"] == "start" for e in events(redis_client, uid)) == 1


def test_an_orchestrators_default_policy_applies_and_a_call_overrides_it(client, uid, redis_client):
    client.start_new("HeldOrExisting", uid, {"key": uid})
    assert client.start_new("HeldOrExisting", uid, {"key": uid}) == uid
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("HeldOrExisting", uid, {"key": uid}, if_live="fail")
    client.terminate(uid)
    release(redis_client, uid)


def test_terminate_existing_ends_the_live_run_and_starts_a_new_one(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid})
    old = run_id(client, uid)
    client.start_new("Delay", uid, {"seconds": 0, "value": 1}, if_live="terminate_existing")
    assert run_id(client, uid) != old
    release(redis_client, uid)  # the old step, if it began, must end before the new run's step runs
    assert client.wait_for_completion(uid, timeout=20).output == 1


def test_terminate_existing_waits_for_the_ended_runs_running_step(client, uid, redis_client):
    client.start_new("HeldThenStep", uid, {"key": uid})
    old = run_id(client, uid)
    wait_until(lambda: named(redis_client, uid, "start"), 20, "the held step to begin")
    client.start_new("Probe", uid, {"seconds": 0, "key": uid, "steps": 1}, if_live="terminate_existing")
    with pytest.raises(WaitTimeout):  # two runs of one ID never execute at once
        client.wait_for_completion(uid, timeout=1.5)
    release(redis_client, uid)
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED
    runs = [e["run"] for e in events(redis_client, uid) if e["event"] in ("start", "end") and e.get("run")]
    assert runs[:2] == [old, old]  # the held step began and ended before the new run's step
    assert all(run != old for run in runs[2:]) and runs[2:]


def test_terminate_existing_under_concurrency_leaves_exactly_one_live_run(client, uid, redis_client):
    steps = {"seconds": 0.2, "key": uid, "steps": 3}
    barrier = threading.Barrier(20)
    started: list[str] = []

    def contend() -> None:
        barrier.wait(10)
        started.append(client.start_new("Probe", uid, steps, if_live="terminate_existing"))

    threads = [threading.Thread(target=contend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(started) == 20  # every start terminated its predecessor and claimed
    done = client.wait_for_completion(uid, timeout=30)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    starts = Counter(e["run"] for e in events(redis_client, uid) if e["event"] == "start")
    # The surviving run ran all three steps; a terminated run at most its step in flight.
    assert starts.pop(done.run_id) == 3
    assert all(n == 1 for n in starts.values()), starts


# -- when a finished run is on record ---------------------------------------------------
def test_allow_failed_only_refuses_after_completed_and_allows_after_failed(client, uid):
    assert finished(client, uid, "HelloSequence") is RuntimeStatus.COMPLETED
    with pytest.raises(InstanceAlreadyExists) as refused:
        client.start_new("AlwaysFails", uid, if_finished=IfFinished.ALLOW_FAILED_ONLY)
    assert refused.value.runtime_status is RuntimeStatus.COMPLETED
    client.purge_instance_history(uid)
    assert finished(client, uid, "AlwaysFails") is RuntimeStatus.FAILED
    client.start_new("HelloSequence", uid, if_finished="allow_failed_only")
    assert client.wait_for_completion(uid, timeout=20).runtime_status is RuntimeStatus.COMPLETED


def test_reject_runs_an_id_once_while_its_record_exists(client, uid):
    assert finished(client, uid, "AlwaysFails") is RuntimeStatus.FAILED
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("HelloSequence", uid, if_finished="reject")
    client.purge_instance_history(uid)
    client.start_new("HelloSequence", uid, if_finished="reject")


def test_an_unknown_policy_is_an_invalid_argument(client, uid):
    with pytest.raises(InvalidArgument):
        client.start_new("HelloSequence", uid, if_live="sometimes")
    assert client.get_status(uid) is None


# -- idempotent starts ------------------------------------------------------------------
def test_a_retried_start_with_the_same_request_id_returns_the_same_run(client, uid, redis_client):
    client.start_new("Held", uid, {"key": uid}, request_id="req-1")
    first = run_id(client, uid)
    assert client.start_new("Held", uid, {"key": uid}, request_id="req-1") == uid
    assert run_id(client, uid) == first
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("Held", uid, {"key": uid}, request_id="req-2")
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=20)
    # Even after the run finished, the retry answers with it instead of starting again.
    assert client.start_new("Held", uid, {"key": uid}, request_id="req-1") == uid
    assert run_id(client, uid) == first
    assert sum(e["event"] == "start" for e in events(redis_client, uid)) == 1


def test_a_retried_start_without_an_id_finds_the_id_of_its_first_attempt(client, uid):
    first = client.start_new("HelloSequence", request_id=uid)
    assert client.start_new("HelloSequence", request_id=uid) == first
    assert client.start_new("HelloSequence", request_id=f"{uid}-other") != first


# -- history --------------------------------------------------------------------------------
def test_history_lists_each_step_with_times_and_outcome(client, uid):
    finished(client, uid, "HelloSequence")
    status = client.get_status(uid, show_history=True)
    assert [s.name for s in status.history] == ["proj.tasks.say_hello"] * 3
    assert {s.outcome for s in status.history} == {"Completed"}
    assert all(s.started <= s.ended for s in status.history)
    assert all(s.result is None for s in status.history)
    with_output = client.get_status(uid, show_history=True, show_history_output=True)
    assert with_output.history[-1].result == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def test_history_records_the_failing_step(client, uid):
    finished(client, uid, "AlwaysFails", "x")
    history = client.get_status(uid, show_history=True, show_history_output=True).history
    assert [(s.name, s.outcome) for s in history] == [
        ("proj.tasks.prepare", "Completed"), ("proj.tasks.explode", "Failed")
    ]
    assert history[1].result == "ValueError: boom"


def test_history_is_not_read_unless_asked(client, uid):
    finished(client, uid, "HelloSequence")
    assert client.get_status(uid).history is None
