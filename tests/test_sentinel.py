"""Redis Sentinel: broker, result backend and store follow a forced failover; and
``singleton_min_replicas``, a claim that waits for its replica.

One master, one replica and three sentinels (tests/services.py SentinelGroup); a
worker and gunicorn configured by sentinel:// URLs and REDIS_SENTINEL_MASTER, as a
deployment would be. Starts keep coming while SENTINEL FAILOVER moves the master.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from itertools import pairwise

import pytest
import redis
from celery import Celery

from devtools.processes import ManagedProcess
from singleton import ServiceUnavailable, Settings
from singleton.store import Store
from tests.services import SentinelGroup, http_json
from tests.test_api_http import Gunicorn, request
from tests.workers import Worker, wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
TERMINAL = {"Completed", "Failed", "Terminated"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sentinel")
    group = SentinelGroup(directory).start()
    # Claims wait for the replica (without it, a claim the old master acknowledged can
    # vanish in the switch, and its run with it); a run whose later writes vanish is
    # failed as lost by the reconciler, here after a short lease.
    env = {**os.environ, "CELERY_BROKER_URL": group.url, "CELERY_RESULT_BACKEND": group.url,
           "REDIS_SENTINEL_MASTER": group.name, "SINGLETON_MIN_REPLICAS": "1",
           "SINGLETON_RUN_LEASE": "5", "SINGLETON_RECONCILE_INTERVAL": "1"}
    worker = Worker(directory / "worker.log", env=env)
    web = Gunicorn(directory / "web.log", workers=2, env=env, wsgi="tests.probe_http:app")
    beat = ManagedProcess([sys.executable, "-m", "celery", "-A", "proj", "beat", "--loglevel=INFO",
                           f"--schedule={directory / 'beat-schedule'}"], log=directory / "beat.log",
                          env=env, name="beat")
    try:
        beat.start()
        # The ping helper knows no master name: the worker is ready when it says so.
        ManagedProcess.start(worker)
        worker.wait_ready(lambda: " ready." in worker.text(), timeout=60, what="the worker to be ready")
        web.start()
        yield group, web, worker
    finally:
        beat.stop()
        web.stop()
        worker.stop()
        group.stop()


def start(web, instance_id: str, seconds: float = 0.5) -> tuple[int, dict]:
    """POST a start of Probe; return the status code and the headers."""
    status, headers, _ = request("POST", web.port, f"/api/orchestrators/Probe/{instance_id}",
                                 {"seconds": seconds, "key": instance_id})
    return status, dict(headers)


def runtime_status(web, instance_id: str) -> str:
    _, body = http_json("GET", f"http://127.0.0.1:{web.port}/runtime/webhooks/durabletask/instances/"
                           f"{instance_id}")
    return body.get("runtimeStatus", "") if isinstance(body, dict) else ""


def test_a_forced_failover_leaves_no_run_stuck_no_500_and_recovers(deployment):
    group, web, worker = deployment
    old_master = group.master_port()
    contended = f"contended-{uuid.uuid4().hex[:6]}"
    answers: Counter = Counter()
    started: list[str] = []
    unavailable_without_retry_after: list[dict] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for instance_id in (f"s-{uuid.uuid4().hex[:8]}", contended):
                try:
                    status, headers = start(web, instance_id)
                except OSError:
                    status, headers = 0, {}
                answers[status] += 1
                if status == 202:
                    started.append(instance_id)
                if status == 503 and "Retry-After" not in headers:
                    unavailable_without_retry_after.append(headers)
            time.sleep(0.05)  # a steady trickle of starts, not a flood

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: answers[202] >= 5, 30, "starts before the failover")
        new_master = group.failover()
        # Recovered by itself: starts are accepted again after the switch.
        accepted, contended_before = answers[202], started.count(contended)
        wait_until(lambda: answers[202] >= accepted + 5 and started.count(contended) > contended_before,
                   90, "starts after the failover, the contended ID's among them")
    finally:
        stop.set()
        loader.join(timeout=60)
    assert new_master != old_master
    assert set(answers) <= {202, 409, 503}, answers
    assert not unavailable_without_retry_after
    # No run stuck: every accepted start ends.
    for instance_id in set(started):
        wait_until(lambda i=instance_id: runtime_status(web, i) in TERMINAL, 90, f"{instance_id} to end")
    outcomes = Counter(runtime_status(web, i) for i in set(started))
    # No two live runs of one ID: the contended ID's runs ran one after the other. The
    # worker's log is the witness: what the steps wrote to Redis in the failover's
    # window of asynchronous replication may be gone.
    runs = step_spans(worker.text(), contended)
    assert len(runs) >= 2, runs  # the ID ran before and after the failover
    for (_, end), (begin, _) in pairwise(sorted(runs.values())):
        assert begin >= end, f"two runs of one ID overlap: {runs}"
    print(dict(answers), dict(outcomes))


STEP_DONE = re.compile(r"^\[(?P<at>[\d-]+ [\d:]+,\d+): INFO/\S+\] instance=(?P<id>\S+) run=(?P<run>\w+) "
                       r"Task tests\.probe\.probe_step\[[^]]+\] succeeded in (?P<took>[\d.]+)s", re.M)


def step_spans(log: str, instance_id: str) -> dict[str, tuple[float, float]]:
    """Return each run's (start, end) of the instance's probe steps, from a worker's log."""
    spans: dict[str, tuple[float, float]] = {}
    for m in STEP_DONE.finditer(log):
        if m["id"] == instance_id:
            end = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            begin, last = spans.get(m["run"], (end - float(m["took"]), end))
            spans[m["run"]] = (min(begin, end - float(m["took"])), max(last, end))
    return spans


# -- singleton_min_replicas: a claim waits for the replica (WAIT) ------------------------
def replicated_store(port: int, prefix: str, **settings) -> Store:
    app = Celery("replicas-test", set_as_current=False)
    return Store.from_app(app, Settings(key_prefix=prefix, store_url=f"redis://127.0.0.1:{port}/0",
                                        **settings))


def test_with_min_replicas_a_claim_is_on_the_replica_when_the_start_returns(deployment, prefix):
    group, _, _ = deployment
    group.wait_replicated()  # the failover test may have just moved the master
    store = replicated_store(group.master_port(), prefix, min_replicas=1)
    replica = redis.Redis(port=next(p for p in (group.master.port, group.replica.port)
                                    if p != group.master_port()))
    for n in range(20):
        assert store.claim(f"id-{n}", name="Probe", run_id=uuid.uuid4().hex, input_json="1").claimed
        assert replica.hget(store.keys(f"id-{n}").record, "status") == b"Pending"


def test_a_claim_no_replica_confirms_in_time_is_given_back_and_unavailable(redis_server, prefix):
    # The tests' own Redis has no replica: WAIT returns 0 after replica_timeout.
    store = replicated_store(redis_server.port, prefix, min_replicas=1, replica_timeout=0.2)
    with pytest.raises(ServiceUnavailable, match="reached 0 of the 1 replicas"):
        store.claim("alone", name="Probe", run_id=uuid.uuid4().hex, input_json="1")
    assert store.read("alone") is None
    unconfirmed = replicated_store(redis_server.port, prefix)
    assert unconfirmed.claim("alone", name="Probe", run_id=uuid.uuid4().hex, input_json="1").claimed
