"""End to end over real HTTP: gunicorn (4 workers) serving the API, a real Celery worker.

Every response is checked against the OpenAPI document, as in test_api.py.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from devtools.processes import ManagedProcess
from proj.redis_server import free_port
from tests.probe import events, release
from tests.test_api import assert_documented
from tests.workers import wait_until

WEBHOOK = "/runtime/webhooks/durabletask"
THREADS = 30
REQUESTS_PER_THREAD = 10
HTTP_TIMEOUT = 30.0


class Gunicorn(ManagedProcess):
    """``gunicorn proj.web:app`` (or another WSGI target) in its own process group, ready once it answers."""

    def __init__(self, log: Path, *, workers: int = 4, env: dict[str, str] | None = None,
                 wsgi: str = "proj.web:app") -> None:
        self.port = free_port()
        self.workers = workers
        environment = {**os.environ, "API_AUTH": "anonymous", **(env or {})}
        environment.pop("API_KEYS", None)
        args = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
                "--log-level", "warning", wsgi]
        super().__init__(args, log=log, env=environment, name="gunicorn")

    def start(self, timeout: float = 60.0) -> Gunicorn:
        """Start gunicorn and wait until it answers."""
        super().start()
        self.wait_ready(self._answers, timeout=timeout, what="gunicorn to answer")
        return self

    def _answers(self) -> bool:
        try:
            return request("GET", self.port, "/api/openapi.json")[0] == 200
        except OSError:
            return False


def request(method: str, port: int, path: str, body: Any = None) -> tuple[int, Any, bytes]:
    """Send one request on a new connection; return status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def checked(method: str, port: int, path: str, body: Any = None) -> tuple[int, Any, Any]:
    """Send a request, check the response against the OpenAPI document, decode its JSON."""
    status, headers, raw = request(method, port, path, body)
    assert_documented(method, urlsplit(path).path, status, headers, raw)
    return status, headers, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # With the probe orchestrators, for a run held live while the burst lasts.
    g = Gunicorn(tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", wsgi="tests.probe_http:app")
    g.start()
    yield g
    g.stop()


def fire_together(port: int, path: str, body: Any) -> list[tuple[int, Any, bytes]]:
    """Send THREADS x REQUESTS_PER_THREAD identical POSTs, the threads released at once."""
    barrier = threading.Barrier(THREADS, timeout=30)
    results: list[tuple[int, Any, bytes]] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        for _ in range(REQUESTS_PER_THREAD):
            result = request("POST", port, path, body)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client thread did not finish in time"
    return results


def test_300_concurrent_starts_of_one_id_make_one_202_and_299_409s_and_one_run(server, redis_client, worker):
    instance_id = f"same-id-{uuid.uuid4().hex[:8]}"
    path = f"/api/orchestrators/Held/{instance_id}"
    # The run is held live until the burst is over, so no start can come after it ended.
    results = fire_together(server.port, path, {"key": instance_id})
    after_burst = checked("GET", server.port, f"/runtime/webhooks/durabletask/instances/{instance_id}")
    assert after_burst[0] == 202
    for status, headers, raw in results:
        assert_documented("POST", path, status, headers, raw)
    assert Counter(status for status, _, _ in results) == {202: 1, 409: 299}
    accepted = next(json.loads(raw) for status, _, raw in results if status == 202)
    refused = [json.loads(raw) for status, _, raw in results if status == 409]
    assert all(r["statusQueryGetUri"] == accepted["statusQueryGetUri"] for r in refused)
    assert all(r["runtimeStatus"] in ("Pending", "Running") for r in refused)

    release(redis_client, instance_id)
    status_path = urlsplit(accepted["statusQueryGetUri"]).path
    done = wait_until(lambda: (r := checked("GET", server.port, status_path))[0] == 200 and r, 30,
                      "the run to complete", interval=0.2)
    assert done[2]["runtimeStatus"] == "Completed" and done[2]["output"] == instance_id
    assert [e["event"] for e in events(redis_client, instance_id)] == ["start", "end"]  # one run

    again = checked("POST", server.port, path, {"key": instance_id})
    release(redis_client, instance_id)
    assert again[0] == 202 and again[2]["id"] == instance_id


@pytest.mark.parametrize("suffix", ["pct%20id", "100%", "two words"])
def test_the_status_location_names_the_instance_quoted_once_over_http(server, suffix):
    instance_id = f"loc-{uuid.uuid4().hex[:8]}-{suffix}"
    encoded = quote(instance_id, safe="")
    # Live until terminated: the run waits for an approval event that never comes.
    assert checked("POST", server.port, f"/api/orchestrators/ApprovalWorkflow/{encoded}")[0] == 202
    try:
        status, headers, _ = checked("GET", server.port, f"{WEBHOOK}/instances/{encoded}?showInput=false")
        assert status == 202
        expected = f"http://127.0.0.1:{server.port}{WEBHOOK}/instances/{encoded}?showInput=false"
        assert headers["Location"] == expected
        followed = urlsplit(headers["Location"])
        again = checked("GET", server.port, f"{followed.path}?{followed.query}")
        assert again[2]["instanceId"] == instance_id
    finally:
        request("POST", server.port, f"{WEBHOOK}/instances/{encoded}/terminate")


@pytest.fixture
def broker_down(tmp_path: Path):
    """gunicorn whose broker is a closed port; its records stay in the test Redis."""
    g = Gunicorn(tmp_path / "gunicorn.log", workers=1,
                 env={"CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}).start()
    yield g
    g.stop()


def test_broker_down_answers_503_with_retry_after_and_leaves_no_claim(broker_down):
    instance_id = f"no-broker-{uuid.uuid4().hex[:8]}"
    start = f"/api/orchestrators/HelloSequence/{instance_id}"
    status, headers, body = checked("POST", broker_down.port, start)
    assert (status, body["code"]) == (503, "service_unavailable")
    assert headers["Retry-After"] == "10"
    status, _, _ = checked("GET", broker_down.port, f"/runtime/webhooks/durabletask/instances/{instance_id}")
    assert status == 404  # the claim was undone


@pytest.fixture
def redis_down(tmp_path: Path):
    """gunicorn whose Redis (broker and record store) is a closed port."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {"REDIS_URL": dead, "CELERY_BROKER_URL": dead, "CELERY_RESULT_BACKEND": dead}
    g = Gunicorn(tmp_path / "gunicorn.log", workers=1, env=env).start()
    yield g
    g.stop()


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/orchestrators/HelloSequence/no-redis"),
    ("GET", "/runtime/webhooks/durabletask/instances/no-redis"),
    ("GET", "/runtime/webhooks/durabletask/instances?top=5"),
])
def test_redis_down_answers_503_json_on_every_route_that_needs_it(redis_down, method, path):
    status, headers, body = checked(method, redis_down.port, path)
    assert (status, body["code"]) == (503, "service_unavailable")
    assert headers["Retry-After"] == "10"
