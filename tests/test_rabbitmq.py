"""RabbitMQ as the broker: timers on classic and quorum queues, settings, and make run.

The lifecycle, durable-feature, schedule and chaos tests run on RabbitMQ too (their
modules are parametrised by broker); this module holds what only RabbitMQ has. Each
queue type gets a vhost of its own, deleted with everything in it afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from singleton import RuntimeStatus, Settings
from tests.services import rabbitmq_vhost
from tests.test_devserver import STATUS, DevServer
from tests.workers import REPO, Worker, wait_until


# -- settings ------------------------------------------------------------------------
def test_on_rabbitmq_timers_hop_at_half_the_consumer_timeout():
    assert Settings.from_conf({"broker_url": "amqp://guest@127.0.0.1//"}).max_countdown == 900
    settings = Settings.from_conf({"broker_url": "pyamqp://h//", "singleton_consumer_timeout": "600"})
    assert settings.max_countdown == 300


def test_on_redis_timers_still_hop_at_half_the_visibility_timeout():
    assert Settings.from_conf({"broker_url": "redis://h/0"}).max_countdown == 1800
    assert Settings.from_conf({"broker_url": "amqp://h//", "singleton_max_countdown": 5}).max_countdown == 5


# -- timers on classic and quorum queues ----------------------------------------------
@pytest.fixture(scope="module", params=["classic", "quorum"])
def rabbitmq(request, tmp_path_factory):
    """A vhost and a worker whose queues are of one type; yields the processes' environment."""
    vhost = rabbitmq_vhost()
    env = {**os.environ, "CELERY_BROKER_URL": vhost.url, "CELERY_QUEUE_TYPE": request.param}
    worker = Worker(tmp_path_factory.mktemp("worker") / "worker.log", env=env)
    try:
        worker.start()
        yield request.param, vhost, env, worker
    finally:
        worker.stop()
        vhost.delete()


def remote_start(env: dict, name: str, instance_id: str, value: object) -> dict:
    """Start and await a run from a process configured by `env` (queue type included)."""
    done = subprocess.run([sys.executable, "-m", "tests.remote_start", name, instance_id, json.dumps(value)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_worker_consumes_a_queue_of_the_configured_type(rabbitmq):
    queue_type, vhost, _, _ = rabbitmq
    queues = vhost.queue_types()
    assert queues["celery"] == queue_type
    # Quorum queues get native delayed delivery: countdowns wait in the broker's
    # delay queues, not unacked in a worker.
    delayed = [name for name in queues if name.startswith("celery_delayed_")]
    assert bool(delayed) is (queue_type == "quorum"), sorted(queues)


def test_a_wait_longer_than_two_timer_hops_times_out_on_time(rabbitmq, uid):
    # The tests' timers hop at most 3 s (SINGLETON_MAX_COUNTDOWN): 7 s takes three messages.
    _, _, env, _ = rabbitmq
    started = time.monotonic()
    done = remote_start(env, "WaitWithTimeout", uid, {"key": uid, "timeout": 7, "default": "late"})
    assert done == {"runtimeStatus": RuntimeStatus.COMPLETED.value, "output": "late"}
    assert 7 <= time.monotonic() - started < 25


def test_a_run_started_from_a_process_of_that_queue_type_completes(rabbitmq, client, uid):
    _, _, env, _ = rabbitmq
    assert remote_start(env, "HelloSequence", uid, None)["output"] == [
        "Hello Tokyo!", "Hello Seattle!", "Hello London!"
    ]
    assert client.get_status(uid).runtime_status is RuntimeStatus.COMPLETED


# -- make run --------------------------------------------------------------------------
def test_make_run_uses_celery_broker_url_and_keeps_redis_for_records(tmp_path):
    vhost = rabbitmq_vhost()
    try:
        server = DevServer(tmp_path / "make-run.log", run_dir=tmp_path / "var",
                           CELERY_BROKER_URL=vhost.url).start()
        try:
            banner = server.text()
            assert "make run: worker is up" in banner
            assert f"Broker  amqp://guest:**@127.0.0.1:5672/{vhost.name}" in banner
            assert "guest:guest" not in banner
            assert server.api("POST", "/api/orchestrators/HelloSequence/hello-1")[0] == 202
            # Generous: make run starts four processes on a machine the suite keeps busy.
            wait_until(lambda: server.api("GET", STATUS)[0] == 200, 60, "hello-1 to complete")
            assert "celery" in vhost.queue_types()
        finally:
            server.interrupt(signal.SIGINT, group=True)
    finally:
        vhost.delete()
