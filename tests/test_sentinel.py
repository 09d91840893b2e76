"""Redis Sentinel: broker, result backend and store follow a forced failover.

One master, one replica and three sentinels (tests/services.py SentinelGroup); a
worker and gunicorn configured by sentinel:// URLs and REDIS_SENTINEL_MASTER, as a
deployment would be. Starts keep coming while SENTINEL FAILOVER moves the master.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter

import pytest

from devtools.processes import ManagedProcess
from tests.services import SentinelGroup, http_json
from tests.test_api_http import Gunicorn, request
from tests.workers import Worker, wait_until

pytestmark = pytest.mark.timeout(300)
TERMINAL = {"Completed", "Failed", "Terminated"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sentinel")
    group = SentinelGroup(directory).start()
    env = {**os.environ, "CELERY_BROKER_URL": group.url, "CELERY_RESULT_BACKEND": group.url,
           "REDIS_SENTINEL_MASTER": group.name}
    worker = Worker(directory / "worker.log", env=env)
    web = Gunicorn(directory / "web.log", workers=2, env=env, wsgi="tests.probe_http:app")
    try:
        # The ping helper knows no master name: the worker is ready when it says so.
        ManagedProcess.start(worker)
        worker.wait_ready(lambda: " ready." in worker.text(), timeout=60, what="the worker to be ready")
        web.start()
        yield group, web
    finally:
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
    group, web = deployment
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
        accepted = answers[202]
        wait_until(lambda: answers[202] >= accepted + 5, 60, "starts after the failover")
    finally:
        stop.set()
        loader.join(timeout=60)
    assert new_master != old_master
    assert set(answers) <= {202, 409, 503}, answers
    assert not unavailable_without_retry_after
    # No run stuck: every accepted start ends.
    for instance_id in set(started):
        wait_until(lambda i=instance_id: runtime_status(web, i) in TERMINAL, 90, f"{instance_id} to end")
    print(dict(answers))
