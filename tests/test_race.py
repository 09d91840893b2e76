"""The singleton guarantee under a real race: threads and processes, one instance ID."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

import pytest

from singleton import InstanceAlreadyExists, RuntimeStatus
from tests.probe import events, release

pytestmark = pytest.mark.usefixtures("worker")

THREADS = 200
PROCESSES = 4
THREADS_PER_PROCESS = 25


def race(client, instance_id: str, key: str, threads: int, go: threading.Event | None = None) -> Counter:
    """Start one ID from `threads` threads released together; count the outcomes."""
    outcomes: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def contender() -> None:
        barrier.wait(timeout=60)
        try:
            client.start_new("Held", instance_id, {"key": key})
            outcome = "started"
        except InstanceAlreadyExists:
            outcome = "refused"
        with lock:
            outcomes[outcome] += 1

    pool = [threading.Thread(target=contender) for _ in range(threads)]
    for thread in pool:
        thread.start()
    if go is not None:
        go.wait(timeout=60)
    barrier.wait(timeout=60)
    for thread in pool:
        thread.join(timeout=60)
    return outcomes


def contender_process(instance_id: str, key: str, ready, go, results) -> None:
    from proj import app
    from singleton import OrchestrationClient
    from tests import probe  # noqa: F401  (registers Probe)

    client = OrchestrationClient(app)
    client.get_status("warm-up")  # connect before the race, not during it
    ready.wait(timeout=60)
    results.put(dict(race(client, instance_id, key, THREADS_PER_PROCESS, go)))


def test_concurrent_starts_of_one_id_make_exactly_one_run(client, uid, redis_client):
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Barrier(PROCESSES + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=contender_process, args=(uid, uid, ready, go, results))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    # Release the processes' threads and ours at the same moment.
    releaser = threading.Timer(0, go.set)
    releaser.start()
    outcomes = race(client, uid, uid, THREADS)
    for _ in procs:
        outcomes.update(results.get(timeout=120))
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    total = THREADS + PROCESSES * THREADS_PER_PROCESS
    print(f"race: {total} contenders -> {dict(outcomes)}")
    # The run is held live until every contender has been answered.
    assert outcomes == Counter(started=1, refused=total - 1)
    release(redis_client, uid)
    done = client.wait_for_completion(uid, timeout=60)
    assert done.runtime_status is RuntimeStatus.COMPLETED
    # Exactly one execution of the orchestrator's step, counted in Redis.
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end"]


def test_after_the_race_the_id_can_be_started_again(client, uid, redis_client):
    first = race(client, uid, uid, 50)
    assert first == Counter(started=1, refused=49)
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=60)
    second = race(client, uid, uid, 50)
    assert second == Counter(started=1, refused=49)
    release(redis_client, uid)
    client.wait_for_completion(uid, timeout=60)
    assert [e["event"] for e in events(redis_client, uid)] == ["start", "end", "start", "end"]
