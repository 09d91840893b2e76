"""A Redis outage: 503s while it is down, no ID left claimed, and every process resumes
on its own when Redis comes back (gunicorn and a Celery worker, none restarted)."""

from __future__ import annotations

import json

from proj.redis_server import RedisServer
from tests.test_api_http import Gunicorn, request
from tests.workers import Worker, wait_until

PREFIX = "outage-test"


def status(port: int, instance_id: str) -> dict:
    code, _, body = request("GET", port, f"/runtime/webhooks/durabletask/instances/{instance_id}")
    return json.loads(body) if code in (200, 202) else {"code": code}


def completed(port: int, instance_id: str) -> bool:
    return status(port, instance_id).get("runtimeStatus") == "Completed"


def test_redis_down_answers_503_and_everything_resumes_when_it_returns(tmp_path, uid):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {"REDIS_URL": server.url, "SINGLETON_KEY_PREFIX": PREFIX}
    worker = Worker(tmp_path / "worker.log", concurrency=1, env=env).start()
    web = Gunicorn(tmp_path / "web.log", workers=1, env=env).start()
    try:
        assert request("POST", web.port, f"/api/orchestrators/HelloSequence/{uid}-before")[0] == 202
        wait_until(lambda: completed(web.port, f"{uid}-before"), 30, "the first run")

        server.stop()
        code, headers, body = request("POST", web.port, f"/api/orchestrators/HelloSequence/{uid}")
        assert code == 503
        assert json.loads(body)["code"] == "service_unavailable" and "Retry-After" in headers

        server.start()  # same port, same append-only file
        # The failed start left nothing claimed: the same ID starts at once (202, not 409)
        # and the worker, never restarted, runs it.
        wait_until(lambda: request("POST", web.port, f"/api/orchestrators/HelloSequence/{uid}")[0] == 202,
                   30, "the API to reach Redis again")
        wait_until(lambda: completed(web.port, uid), 60, "the worker to reconnect and run it")
        assert completed(web.port, f"{uid}-before")  # the record outlived the restart
        assert worker.process.poll() is None and web.process.poll() is None
    finally:
        web.stop()
        worker.stop()
        server.stop()
