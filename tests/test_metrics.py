"""Metrics end to end: gunicorn (2 workers) and a prefork Celery worker share one
multiprocess directory; a scrape of /metrics after a known sequence counts it exactly.

The module has its own Redis server, so no other test's runs or leftover messages can
add to the counts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from proj.redis_server import RedisServer
from singleton.metrics import METRICS, exposition
from tests.test_api_http import Gunicorn, request
from tests.workers import REPO, Worker, wait_until

WEBHOOK = "/runtime/webhooks/durabletask"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """A private Redis, a worker and gunicorn writing metrics to one directory."""
    base = tmp_path_factory.mktemp("metrics")
    (base / "prom").mkdir()
    server = RedisServer(base / "redis", appendonly=False).start()
    env = {"REDIS_URL": server.url, "PROMETHEUS_MULTIPROC_DIR": str(base / "prom")}
    worker = Worker(base / "worker.log", concurrency=2, env=env).start()
    # gunicorn reads extra command-line settings from GUNICORN_CMD_ARGS.
    conf = {"GUNICORN_CMD_ARGS": f"-c {REPO / 'api' / 'gunicorn_conf.py'}"}
    web = Gunicorn(base / "gunicorn.log", workers=2, env={**env, **conf}).start()
    yield web
    web.stop()
    worker.stop()
    server.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics; return every sample as {(name, sorted labels): value}."""
    status, headers, body = request("GET", port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def start(port: int, name: str, instance_id: str) -> int:
    return request("POST", port, f"/api/orchestrators/{name}/{instance_id}", None)[0]


def status_of(port: int, instance_id: str) -> str:
    code, _, body = request("GET", port, f"{WEBHOOK}/instances/{instance_id}")
    assert code in (200, 202), body
    return json.loads(body)["runtimeStatus"]


def test_a_scrape_counts_three_starts_a_refusal_a_failure_and_a_termination_exactly(stack):
    port, uid = stack.port, uuid.uuid4().hex[:8]
    hello, fails, approval = f"hello-{uid}", f"fails-{uid}", f"approval-{uid}"
    assert start(port, "HelloSequence", hello) == 202
    assert start(port, "AlwaysFails", fails) == 202
    assert start(port, "ApprovalWorkflow", approval) == 202
    assert start(port, "ApprovalWorkflow", approval) == 409
    wait_until(lambda: status_of(port, hello) == "Completed", 30, "the sequence to complete")
    wait_until(lambda: status_of(port, fails) == "Failed", 30, "the failing run to fail")
    # The approval run's wait step has run and parked the rest of its chain.
    wait_until(lambda: value(scrape(port), "singleton_gate_verdicts_total", verdict="run") == 6, 30,
               "six steps to pass the gate")
    waiting = scrape(port)
    live_status = status_of(port, approval)
    assert value(waiting, "singleton_live_runs", status=live_status) == 1
    assert sum(v for (n, _), v in waiting.items() if n == "singleton_live_runs") == 1

    assert request("POST", port, f"{WEBHOOK}/instances/{approval}/terminate?reason=test")[0] == 202
    assert status_of(port, approval) == "Terminated"
    after = scrape(port)

    starts = {tuple(v for _, v in labels): v for (n, labels), v in after.items()
              if n == "singleton_starts_total"}
    assert starts == {
        ("HelloSequence", "started"): 1, ("AlwaysFails", "started"): 1,
        ("ApprovalWorkflow", "started"): 1, ("ApprovalWorkflow", "refused_live"): 1,
    }
    assert value(after, "singleton_claim_seconds_count") == 4

    ended = {labels: v for (n, labels), v in after.items() if n == "singleton_runs_ended_total"}
    assert ended == {
        (("orchestrator", "AlwaysFails"), ("status", "Failed")): 1,
        (("orchestrator", "ApprovalWorkflow"), ("status", "Terminated")): 1,
        (("orchestrator", "HelloSequence"), ("status", "Completed")): 1,
    }
    verdicts = {labels: v for (n, labels), v in after.items() if n == "singleton_gate_verdicts_total"}
    assert verdicts == {(("verdict", "run"),): 6}
    steps = {dict(labels)["task"]: v for (n, labels), v in after.items()
             if n == "singleton_step_duration_seconds_count"}
    assert steps == {"proj.tasks.say_hello": 3, "proj.tasks.prepare": 1, "proj.tasks.explode": 1,
                     "singleton.wait_for_external_event": 1}
    assert sum(v for (n, _), v in after.items() if n == "singleton_live_runs") == 0
    # Whichever gunicorn worker answers, the scrape adds up every process's counts.
    assert scrape(port) == after


def gunicorn_workers(web: Gunicorn) -> set[int]:
    path = Path(f"/proc/{web.process.pid}/task/{web.process.pid}/children")
    return {int(pid) for pid in path.read_text().split()}


def test_counts_survive_a_gunicorn_worker_that_dies(stack):
    before = scrape(stack.port)
    victims = gunicorn_workers(stack)
    victim = min(victims)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(gunicorn_workers(stack) - {victim}) == 2, 30, "gunicorn to replace the worker")
    # The dead worker's files stay counted, whichever worker (the new one too) answers.
    assert [scrape(stack.port) for _ in range(4)] == [before] * 4


def test_no_label_carries_an_instance_id(stack):
    instance_id = f"secret-{uuid.uuid4().hex}"
    assert start(stack.port, "HelloSequence", instance_id) == 202
    wait_until(lambda: status_of(stack.port, instance_id) == "Completed", 30, "the run to complete")
    _, _, body = request("GET", stack.port, "/metrics")
    assert instance_id not in body.decode()


def test_a_scrape_shows_only_documented_metrics_of_the_layer(stack):
    exposed = {name for name, _ in scrape(stack.port) if name.startswith("singleton_")}
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in exposed}
    assert families <= {m.name for m in METRICS}


def test_the_documented_metrics_are_exactly_the_ones_the_module_defines(store):
    types = dict(re.findall(r"^# TYPE (singleton_\S+) (\S+)$", exposition(store).decode(), re.M))
    assert types == {m.name: m.type for m in METRICS}


def test_metrics_need_a_key_like_every_route(app):
    http = create_app({"API_KEYS": "the-key"}, celery_app=app).test_client()
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"x-functions-key": "the-key"}).status_code == 200


def test_metrics_public_opens_only_the_metrics_path(app):
    http = create_app({"API_KEYS": "the-key", "METRICS_PUBLIC": "1"}, celery_app=app).test_client()
    response = http.get("/metrics")
    assert response.status_code == 200 and b"singleton_live_runs" in response.data
    assert http.get(f"{WEBHOOK}/instances").status_code == 401
