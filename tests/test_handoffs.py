"""Hand-offs that survive their caller: a start retried after a lost publish, timers,
an undone start, and the bounds and clean-up around them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from proj.redis_server import free_port
from singleton import RuntimeStatus, SingletonError, WaitTimeout
from singleton.outbox import relay
from singleton.recovery import RECONCILE_TASK
from singleton.runtime import runtime
from tests.durability import module_worker, named, settles
from tests.holds import arm, release_point
from tests.test_outbox import outbox
from tests.test_publish_failure import start_with_dead_broker
from tests.workers import REPO, wait_until

START = """
import sys
import tests.probe
from proj import app
from singleton import OrchestrationClient
name, instance_id, body, request_id = sys.argv[1:5]
OrchestrationClient(app).start_new(name, instance_id, __import__("json").loads(body),
                                   request_id=request_id or None)
print("started", flush=True)
"""


@pytest.fixture(scope="module")
def holds_worker(tmp_path_factory):
    """One worker with the hold points loaded, for the tests of this module."""
    yield from module_worker(tmp_path_factory)


def start_elsewhere(broker_url: str, name: str, instance_id: str, body, request_id: str = ""):
    """Start a run from a process of its own, whose broker is `broker_url`."""
    env = {**os.environ, "CELERY_BROKER_URL": broker_url}
    return subprocess.Popen(
        [sys.executable, "-c", START, name, instance_id, json.dumps(body), request_id],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

RAISE = """
import sys
from proj import app
from singleton import OrchestrationClient, ServiceUnavailable
try:
    OrchestrationClient(app).raise_event(sys.argv[1], "Ping", "first")
    print("raised", flush=True)
except ServiceUnavailable as exc:
    print("unavailable", exc, flush=True)
"""


def finish(client, uid: str, timeout: float) -> RuntimeStatus | str:
    try:
        return client.wait_for_completion(uid, timeout=timeout).runtime_status
    except WaitTimeout:
        return f"still {client.get_status(uid).runtime_status.value} after {timeout:.0f} s"


@pytest.fixture
def store(app):
    return runtime(app).store


@pytest.mark.usefixtures("holds_worker")
def test_a_start_retried_after_its_first_attempt_died_before_publishing_runs(client, uid):
    # The first attempt's broker accepts the connection and never answers: it claims
    # the ID, then hangs in the publish until it is killed there.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        url = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"
        request_id = uuid.uuid4().hex
        first = start_elsewhere(url, "HelloSequence", uid, None, request_id)
        try:
            wait_until(lambda: client.get_status(uid) or first.poll() is not None, 60, "the claim")
            assert first.poll() is None, f"set-up: the first attempt ended: {first.stdout.read()}"
        finally:
            first.kill()
            first.wait(10)
    assert client.get_status(uid).runtime_status is RuntimeStatus.PENDING
    assert client.start_new("HelloSequence", uid, request_id=request_id) == uid  # the retry: 202
    outcome = finish(client, uid, timeout=6)
    assert outcome is RuntimeStatus.COMPLETED, f"the retried start reported success; the run is {outcome}"


def test_undoing_a_failed_start_restores_the_replaced_runs_history(client, store, uid):
    store.claim(uid, name="HelloSequence", run_id="old-run", input_json="null")
    store.begin_step(uid, run_id="old-run", task_id="step-1", token="token", lease_s=30, name="say_hello")
    store.complete_step(uid, run_id="old-run", task_id="step-1", token="token",
                        result_json=json.dumps(["Hello Tokyo!"]))
    store.end_run(uid, run_id="old-run", status=RuntimeStatus.COMPLETED,
                  output_json=json.dumps(["Hello Tokyo!"]))
    before = client.get_status(uid, show_history=True)
    assert [s.task_id for s in before.history] == ["step-1"]

    assert start_with_dead_broker(uid)["outcome"] == "unavailable"
    after = client.get_status(uid, show_history=True)
    assert after.run_id == "old-run"
    assert after.history == before.history, f"the restored run's history is {after.history}"


def test_an_event_timeout_that_fires_before_the_wait_parks_still_ends_the_wait(
    client, uid, redis_client, holds_worker
):
    arm(redis_client, uid, "timer-published")  # hold the wait step between timer and park
    client.start_new("WaitWithTimeout", uid, {"timeout": 0.2, "key": uid})
    held = wait_until(lambda: named(redis_client, uid, "held:timer-published"), 20, "the timer")
    timer = f"singleton.timer[{held[0]['task']}]"
    settles(lambda: any(timer in line and ("succeeded" in line or "retry" in line)
                        for line in holds_worker.log.read_text().splitlines()), 5)
    release_point(redis_client, uid, "timer-published")
    outcome = finish(client, uid, timeout=5)
    assert outcome is RuntimeStatus.FAILED, f"the 0.2 s timeout never ended the wait: the run is {outcome}"
    assert "EventTimeout" in client.get_status(uid).output


@pytest.mark.usefixtures("holds_worker")
def test_an_event_whose_publish_failed_is_sent_again_by_the_reconciler(app, client, store, uid, redis_client):
    client.start_new("WaitTwice", uid, {"key": uid})
    wait_until(lambda: (store.read(uid) or {}).get("waiting") == "Ping", 20, "the first wait to park")
    # The event is applied, but its caller's broker is gone: the next step stays in the outbox.
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    raised = subprocess.run([sys.executable, "-c", RAISE, uid], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert raised.startswith("unavailable"), raised
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING  # not parked away
    # Beat's reconciler passes re-send it once its grace period is over.
    wait_until(lambda: relay(app) or named(redis_client, uid, "got"), 30, "the reconciler's re-send")
    got = wait_until(lambda: named(redis_client, uid, "got"), 20, "the next step")
    assert [e["value"] for e in got] == ["first"]
    wait_until(lambda: (store.read(uid) or {}).get("waiting") == "Ping", 20, "the second wait")
    client.raise_event(uid, "Ping", "second")
    assert finish(client, uid, timeout=20) is RuntimeStatus.COMPLETED


TIMER = """
import json, sys, time
from proj import app
from singleton import ServiceUnavailable
from singleton.durable import TIMER_TASK
action = json.loads(sys.argv[1])
try:
    app.tasks[TIMER_TASK](time.time(), action)  # the timer task's body, as a worker runs it
    print("performed", flush=True)
except ServiceUnavailable as exc:
    print("unavailable", exc, flush=True)
"""


def fire_with_dead_broker(action: dict) -> str:
    """Run the timer task's body for `action` in a process whose broker is on a dead port.

    Its record store is the test's Redis: the timer's script runs, its publish fails. (A
    worker whose own Redis broker goes away while it holds an unacked message dies in
    kombu's connection clean-up, so the failure is driven here rather than in a worker.)
    """
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    return subprocess.run([sys.executable, "-c", TIMER, json.dumps(action)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=True).stdout


def test_a_timer_whose_publish_fails_hands_its_run_on_once_the_broker_is_back(
    app, client, store, uid, redis_client, holds_worker
):
    arm(redis_client, uid, "timer-run")  # the worker's own timer waits, so it cannot fire first
    client.start_new("WaitWithTimeout", uid, {"timeout": 0.5, "key": uid, "default": "by default"})
    held = wait_until(lambda: named(redis_client, uid, "held:timer-run"), 20, "the timer to fire")
    record = store.read(uid)
    assert record.get("waiting") == "Never", record
    # The timer's action, fired from a process whose broker is gone.
    action = {"kind": "event_timeout", "instance": uid, "run": record["run"],
              "task": record["waittask"], "event": "Never", "timeout": 0.5}
    fired = fire_with_dead_broker(action)
    assert fired.startswith("unavailable"), fired
    # The default was decided and is owed in the outbox; nothing parked it away.
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING
    [(entry, held_release)] = outbox(store, redis_client, uid).items()
    assert entry.startswith(f"rel:{record['run']}:")
    assert json.loads(held_release)["value"] == json.dumps("by default")
    # The worker's own timer, let go now, finds the wait over and sends nothing more.
    release_point(redis_client, uid, "timer-run")
    timer = f"singleton.timer[{held[0]['task']}] succeeded"
    wait_until(lambda: any(timer in line for line in holds_worker.log.read_text().splitlines()), 20,
               "the worker's timer to end")
    assert client.get_status(uid).runtime_status is RuntimeStatus.RUNNING
    assert not named(redis_client, uid, "got")
    # With the broker there, beat's reconciler ticks (run by the worker) hand the run on.
    outcome = _finish_with_reconciler(app, client, uid, timeout=20)
    assert outcome is RuntimeStatus.COMPLETED, f"after the timer's failed publish the run is {outcome}"
    assert client.get_status(uid).output == "by default"
    assert [e["value"] for e in named(redis_client, uid, "got")] == ["by default"]
    assert outbox(store, redis_client, uid) == {}


def _finish_with_reconciler(app, client, uid: str, timeout: float) -> RuntimeStatus | str:
    # One reconciler tick a second (each wait for the run's end is the pause between them).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.send_task(RECONCILE_TASK, ignore_result=True)
        outcome = finish(client, uid, timeout=1)
        if isinstance(outcome, RuntimeStatus):
            return outcome
    return f"still {client.get_status(uid).runtime_status.value} after {timeout:.0f} s"


def test_the_events_buffered_for_one_instance_are_bounded(app, client, store, uid):
    # A live run that waits for nothing.
    store.claim(uid, name="Held", run_id=uuid.uuid4().hex, input_json="null")
    refused = None
    for n in range(2000):
        try:
            client.raise_event(uid, "Flood", n)
        except SingletonError as exc:
            refused = (n, exc)
            break
    try:
        client.raise_event(uid, "Big", "x" * (32 * 1024 * 1024))
        big = "accepted"
    except SingletonError as exc:
        big = f"refused: {exc}"
    client.terminate(uid)
    assert refused is not None, f"2000 events were buffered for one instance; a 32 MB event was {big}"
    assert big.startswith("refused"), f"a 32 MB event was {big}"
