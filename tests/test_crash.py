"""Crashes and redeliveries: a killed worker's step comes back, and never runs twice at once."""

from __future__ import annotations

import pytest

from singleton import RuntimeStatus
from tests.probe import events, release
from tests.workers import Worker, wait_until


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        w = Worker(tmp_path / f"worker-{len(started)}.log", **kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def test_step_of_a_sigkilled_worker_is_redelivered_and_the_run_completes(client, uid, redis_client, workers):
    first = workers()
    client.start_new("HeldThenStep", uid, {"key": uid})
    started = wait_until(lambda: events(redis_client, uid), 20, "the first step to start")
    first.kill()
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING

    workers()
    wait_until(lambda: len(events(redis_client, uid)) == 2, 60, "the step to be redelivered")
    release(redis_client, uid)
    done = client.wait_for_completion(uid, timeout=90)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    log = events(redis_client, uid)
    # The killed delivery started and never ended; the redelivery ran the step to its
    # end under the same task id, and then the second step ran once.
    assert [e["event"] for e in log] == ["start", "start", "end", "start", "end"]
    assert log[1]["task"] == started[0]["task"]
    assert log[0]["pid"] != log[1]["pid"]


def test_step_redelivered_while_still_running_does_not_run_twice(client, uid, redis_client, workers):
    # A 3-second visibility timeout (the shortest the session's 2 s step lease agrees
    # with; timers then hop 1 s) and a held step: the broker hands the message to the
    # second pool process while the first is still running it.
    worker = workers(env={"SINGLETON_VISIBILITY_TIMEOUT": "3", "SINGLETON_MAX_COUNTDOWN": "1"})
    client.start_new("Held", uid, {"key": uid})
    task_id = wait_until(lambda: events(redis_client, uid), 20, "the step to start")[0]["task"]
    # The redelivery really happens, and steps aside (waits) instead of running.
    wait_until(lambda: f"held_step[{task_id}]: another delivery holds it" in worker.text(), 60,
               "the redelivery to wait")
    release(redis_client, uid)
    done = client.wait_for_completion(uid, timeout=90)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]
