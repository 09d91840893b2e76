"""The start decision's outcomes, as signals and as counts (one process, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from proj.redis_server import free_port
from singleton import IfFinished, InstanceAlreadyExists, SingletonError, StartOutcome, start_decided
from singleton.signals import StartDecision
from tests.workers import REPO


@pytest.fixture
def decisions() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receive(sender: Any = None, **kwargs: Any) -> None:
        seen.append(kwargs)

    start_decided.connect(receive, weak=False)
    yield seen
    start_decided.disconnect(receive)


def outcomes(decisions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["orchestrator"], d["outcome"]) for d in decisions]


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_start_then_a_duplicate_send_started_then_refused_live(client, uid, decisions):
    before = count("singleton_starts_total", orchestrator="HelloSequence", outcome="refused_live")
    client.start_new("HelloSequence", uid)
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("HelloSequence", uid)
    client.terminate(uid)
    assert outcomes(decisions) == [("HelloSequence", StartOutcome.STARTED),
                                   ("HelloSequence", StartOutcome.REFUSED_LIVE)]
    assert all(d["seconds"] > 0 for d in decisions), "both claims were timed"
    assert count("singleton_starts_total", orchestrator="HelloSequence", outcome="refused_live") == before + 1


def test_a_finished_run_kept_by_the_policy_is_refused_policy(client, uid, decisions):
    client.start_new("HelloSequence", uid)
    client.terminate(uid)
    with pytest.raises(InstanceAlreadyExists):
        client.start_new("HelloSequence", uid, if_finished=IfFinished.REJECT)
    assert outcomes(decisions)[-1] == ("HelloSequence", StartOutcome.REFUSED_POLICY)


def test_a_repeated_request_id_is_replayed(client, uid, decisions):
    client.start_new("HelloSequence", uid, request_id=f"req-{uid}")
    client.start_new("HelloSequence", uid, request_id=f"req-{uid}")
    client.terminate(uid)
    assert outcomes(decisions) == [("HelloSequence", StartOutcome.STARTED),
                                   ("HelloSequence", StartOutcome.REPLAYED)]


def test_invalid_starts_claim_nothing_and_keep_unknown_names_out_of_labels(client, uid, decisions):
    for name, instance_id in (("NoSuchOrchestrator-" + uid, uid), ("HelloSequence", "bad/id")):
        with pytest.raises(SingletonError):
            client.start_new(name, instance_id)
    assert outcomes(decisions) == [("", StartOutcome.INVALID), ("HelloSequence", StartOutcome.INVALID)]
    assert [d["seconds"] for d in decisions] == [None, None]


def test_a_terminated_run_is_counted_under_its_orchestrator(client, uid):
    labels = {"orchestrator": "HelloSequence", "status": "Terminated"}
    before = count("singleton_runs_ended_total", **labels)
    client.start_new("HelloSequence", uid)
    client.terminate(uid)
    assert count("singleton_runs_ended_total", **labels) == before + 1


def test_a_run_replaced_by_terminate_existing_is_counted_as_terminated_under_its_orchestrator(
    client, uid
):
    hello = {"orchestrator": "HelloSequence", "status": "Terminated"}
    delay = {"orchestrator": "Delay", "status": "Terminated"}
    before = count("singleton_runs_ended_total", **hello), count("singleton_runs_ended_total", **delay)
    client.start_new("HelloSequence", uid)  # no worker here: the run stays live
    client.start_new("Delay", uid, {"seconds": 0}, if_live="terminate_existing")
    assert count("singleton_runs_ended_total", **hello) == before[0] + 1
    client.terminate(uid)
    assert count("singleton_runs_ended_total", **delay) == before[1] + 1


START_WITH_DEAD_BROKER = """
import json, sys
from proj import app
from singleton import OrchestrationClient, ServiceUnavailable, start_decided
seen = []
start_decided.connect(lambda sender=None, **kw: seen.append(kw["outcome"]), weak=False)
try:
    OrchestrationClient(app).start_new("HelloSequence", sys.argv[1])
except ServiceUnavailable:
    pass
print(json.dumps(seen))
"""


def test_a_start_whose_publish_fails_is_unavailable(uid):
    # Same record store, a broker on a port nothing listens on.
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    out = subprocess.run([sys.executable, "-c", START_WITH_DEAD_BROKER, uid], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == ["unavailable"]


def test_an_exception_the_layer_does_not_raise_is_no_outcome():
    decision = StartDecision("HelloSequence")
    assert decision.outcome(RuntimeError("a bug")) is None
    assert decision.outcome(KeyboardInterrupt()) is None
    assert decision.outcome(SingletonError("bad")) is StartOutcome.INVALID
