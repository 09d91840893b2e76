"""Recovery of steps the broker lost before they reached their gate: a group's member,
a countdown message and an event-timeout timer are kept as they are published
(singleton.recovery.keep_published, singleton.durable.start_timer) and sent again by
the reconciler.

Its own module: the tests need the broker's queue to themselves, with no other worker
consuming it (another module's worker would take the messages first).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from singleton import RuntimeStatus
from singleton.durable import TIMER_TASK
from tests.durability import HOLDS, reconcile_once
from tests.probe import events, release
from tests.workers import Worker, wait_until

# What a worker does first when it takes a message from the Redis broker (kombu's
# BRPOP), before it records it as unacked: this process is killed in between.
THIEF = """
import sys, redis
message = redis.Redis.from_url(sys.argv[1]).brpop(["celery"], timeout=30)
print("took" if message else "none", flush=True)
sys.stdin.read()
"""


def test_a_group_member_a_killed_worker_popped_before_its_gate_is_sent_again(
    app, client, uid, redis_client, redis_server, tmp_path
):
    # Redis broker (the session's): RabbitMQ redelivers a killed consumer's message itself.
    w = Worker(tmp_path / "worker.log", imports=HOLDS).start()
    try:
        client.start_new("HeldThenGroup", uid, {"key": uid, "members": 3})
        held = wait_until(lambda: [e for e in events(redis_client, uid) if e["event"] == "start"], 20,
                          "the held step to start")[0]
        # The worker takes no more messages: the group waits in the broker's queue.
        assert app.control.cancel_consumer("celery", destination=[w.node], reply=True)
        release(redis_client, uid)
        run_id = client.get_status(uid).run_id
        wait_until(lambda: queued(redis_client, run_id) == 3, 20, "the group's three members to be queued")
        thief = subprocess.Popen([sys.executable, "-c", THIEF, redis_server.url],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert thief.stdout.readline().strip() == "took"
        thief.kill()  # SIGKILL: the member it popped is neither queued nor unacked
        thief.wait(10)
        # Other modules' killed workers may have left their own messages unacked here.
        assert queued(redis_client, run_id) == 2 and not held_by_a_worker(redis_client, run_id)
        assert app.control.add_consumer("celery", destination=[w.node], reply=True)
        # Beat's reconciler pass, run here: the member kept at publish goes out again
        # once a step lease (2 s here) passes without it reaching its gate.
        done = wait_until(lambda: reconcile_once(app) is not None and client.get_status(uid).runtime_status
                          .is_terminal and client.get_status(uid), 30, "the run to end")
    finally:
        w.stop()
    members = [e for e in events(redis_client, uid) if e["event"] == "start" and e["task"] != held["task"]]
    assert done.runtime_status is RuntimeStatus.COMPLETED, (done.output, members)
    assert len({e["task"] for e in members}) == 3, members


def queued(redis_client, run_id: str) -> int:
    """How many messages of `run_id` wait in the Redis broker's queue."""
    return sum(run_id.encode() in message for message in redis_client.lrange("celery", 0, -1))


def held_by_a_worker(redis_client, run_id: str) -> bool:
    """Is a message of `run_id` unacked in the Redis broker (its stamps name the run)?"""
    return any(run_id.encode() in entry for entry in redis_client.hvals("unacked"))


def test_a_continued_runs_first_step_a_killed_worker_held_until_due_is_sent_again(
    app, client, uid, redis_client, tmp_path
):
    # The worker holds a countdown message unacked until it is due; killed, it leaves
    # the message to the broker's visibility timeout, the shipped hour here, so only
    # the layer can bring the step back within the test.
    env = {"SINGLETON_VISIBILITY_TIMEOUT": "3600"}
    first = Worker(tmp_path / "worker-1.log", env=env).start()
    second = None
    try:
        client.start_new("Counter", uid, {"count": 0, "interval": 2})
        run = client.get_status(uid).run_id
        # Continued: the next run's first step is published with its 2 s countdown.
        new_run = wait_until(lambda: (r := client.get_status(uid).run_id) != run and r, 20,
                             "the run to continue as new")
        wait_until(lambda: held_by_a_worker(redis_client, new_run), 5,
                   "the worker to take the countdown message")
        first.kill()
        second = Worker(tmp_path / "worker-2.log", env=env).start()
        # Beat's reconciler pass, run here: the step kept at publish goes out again a step
        # lease (2 s here) after it was due.
        wait_until(lambda: reconcile_once(app) is not None
                   and (client.get_status(uid).custom_status or {}).get("count", 0) >= 1, 30,
                   "the continued run's first step to run")
    finally:
        client.terminate(uid)
        for w in (first, second):
            if w is not None:
                w.stop()
    assert held_by_a_worker(redis_client, new_run)  # the original still waits for its hour


def timer_held_by_a_worker(redis_client, instance_id: str) -> bool:
    """Is an event-timeout timer of `instance_id` unacked in the Redis broker?

    Timers carry no run stamps: the instance is named in the message body (its action).
    """
    messages = [json.loads(entry)[0] for entry in redis_client.hvals("unacked")]
    return any(m["headers"].get("task") == TIMER_TASK and instance_id.encode() in base64.b64decode(m["body"])
               for m in messages)


def test_an_event_timeout_timer_a_killed_worker_held_until_due_is_sent_again(
    app, client, uid, redis_client, tmp_path
):
    # As above: a killed worker leaves the countdown message it holds to the broker's
    # visibility timeout, the shipped hour, so only the layer can fire the timeout
    # within the test. The step lease is the session's 2 s (so the test ends in
    # seconds); the shipped lease takes the same path in the reconciler, only later.
    env = {"SINGLETON_VISIBILITY_TIMEOUT": "3600"}
    first = Worker(tmp_path / "worker-1.log", env=env, imports=HOLDS).start()
    second = None
    try:
        client.start_new("WaitWithTimeout", uid, {"key": uid, "timeout": 2, "default": "late"})
        wait_until(lambda: timer_held_by_a_worker(redis_client, uid), 10,
                   "the worker to take the timer message")
        first.kill()
        second = Worker(tmp_path / "worker-2.log", env=env, imports=HOLDS).start()
        # Beat's reconciler pass, run here: the timer kept at publish goes out again a
        # step lease after it was due.
        done = wait_until(lambda: reconcile_once(app) is not None and client.get_status(uid).runtime_status
                          .is_terminal and client.get_status(uid), 30, "the timeout to hand on the default")
        # Passes after the run ended send nothing again (the run's steps went with it;
        # tests/test_store_durable.py shows the timer's own entry dropped as it fires).
        assert all(not reconcile_once(app).get("resent") for _ in range(3))
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
    assert done.runtime_status is RuntimeStatus.COMPLETED, done.output
    assert done.output == "late"
    got = [e for e in events(redis_client, uid) if e["event"] == "got"]
    assert [e["value"] for e in got] == ["late"], got  # the timeout fired once
    assert timer_held_by_a_worker(redis_client, uid)  # the original still waits for its hour
