"""A start whose publish fails gives the ID back: nothing is left claimed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from proj.redis_server import free_port
from singleton import RuntimeStatus
from singleton.runtime import runtime
from tests.workers import REPO

START_WITH_DEAD_BROKER = """
import json, sys
from proj import app
from singleton import OrchestrationClient, ServiceUnavailable
try:
    OrchestrationClient(app).start_new("HelloSequence", sys.argv[1])
    print(json.dumps({"outcome": "started"}))
except ServiceUnavailable as exc:
    print(json.dumps({"outcome": "unavailable", "message": str(exc), "id": exc.instance_id}))
"""


def start_with_dead_broker(instance_id: str) -> dict:
    # Same record store (the backend), but a broker on a port nothing listens on.
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    out = subprocess.run(
        [sys.executable, "-c", START_WITH_DEAD_BROKER, instance_id],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def store(app):
    return runtime(app).store


def test_failed_publish_of_a_new_id_leaves_no_record(client, uid):
    answer = start_with_dead_broker(uid)
    assert answer["outcome"] == "unavailable" and answer["id"] == uid
    assert "broker" in answer["message"]
    assert client.get_status(uid) is None
    assert uid not in {s.instance_id for s in client.get_status_by(instance_id_prefix=uid).instances}


def test_failed_publish_restores_the_finished_run_it_replaced(client, store, uid):
    claim = store.claim(uid, name="HelloSequence", run_id="old-run", input_json="null")
    store.end_run(uid, run_id="old-run", status=RuntimeStatus.COMPLETED, output_json=json.dumps(["done"]))
    before = client.get_status(uid)

    answer = start_with_dead_broker(uid)
    assert answer["outcome"] == "unavailable"
    after = client.get_status(uid)
    assert after == before and after.output == ["done"] and after.run_id == "old-run"
    assert store.claim(uid, name="HelloSequence", run_id="next-run", input_json="null").fence > claim.fence
